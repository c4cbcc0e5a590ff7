"""Bring a loopback control plane (etcd, kube-apiserver, kube-controller-manager) and the
process-kubelet up and down.

Everything a running cluster owns lives in one state directory::

    <state>/state.json      pids (with start times), ports, paths: what `down` and `status` read
    <state>/kubeconfig      admin kubeconfig (client certificate, verified server certificate)
    <state>/pki/            CA, serving and client certificates, service-account key
    <state>/etcd/           etcd data
    <state>/logs/           one log file per component
    <state>/pods/<ns>_<pod>/<container>.log   container output, written by the kubelet
    <state>/pvcs/<ns>/<claim>/                persistent volume claims as host directories
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster import pki, procs

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
DEFAULT_STATE = Path.home() / ".cache" / "migrate-safe" / "devcluster" / "run"
NODE_NAME = "devcluster"
# Stopped first to last: the kubelet (and its pods) before the control plane it talks to.
STOP_ORDER = ("kubelet", "kube-controller-manager", "kube-apiserver", "etcd")
# Enough for Jobs, Deployments, garbage collection, namespaces and pod service-account tokens.
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
# Data removed by `down`; logs/ and the pod logs are kept for a post-mortem.
DISPOSABLE = (
    "etcd",
    "pki",
    "pvcs",
    "kcm-certs",
    "kubeconfig",
    "kcm.kubeconfig",
    "kubelet.kubeconfig",
    "kubelet.ready",
    "state.json",
)


class ClusterError(RuntimeError):
    """The cluster could not be started; the message points at the component's log."""


def state_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("DEVCLUSTER_DIR")
    return Path(env) if env else DEFAULT_STATE


@dataclass
class Cluster:
    """A running (or recorded) devcluster in ``root``."""

    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def load_state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        return data

    def processes(self) -> list[procs.Proc]:
        return [procs.Proc.from_json(p) for p in self.load_state().get("processes", [])]

    def running(self) -> bool:
        ps = self.processes()
        return bool(ps) and all(p.alive() for p in ps)

    @property
    def bin_dir(self) -> Path:
        return Path(self.load_state()["bin_dir"])


def free_port() -> int:
    # The port is released again before the component binds it; on a test machine that race is
    # acceptable, and a lost race shows up as a component that fails to start (see its log).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_binaries() -> Path:
    """Run build.sh (a cache hit takes well under a second) and return the binary directory."""
    override = os.environ.get("DEVCLUSTER_BIN_DIR")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def write_kubeconfig(path: Path, server: str, keys: pki.Pki, user: str) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "devcluster",
                "cluster": {"server": server, "certificate-authority-data": b64(keys.ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(keys.cert(user)),
                    "client-key-data": b64(keys.key(user)),
                },
            }
        ],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": user}}],
        "current-context": "devcluster",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _wait(
    what: str, check: Callable[[], bool], proc: procs.Proc, log: Path, timeout: float
) -> None:
    """Poll ``check`` until true; fail fast with the log tail if the process died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not proc.alive():
            raise ClusterError(f"{proc.name} exited while waiting for {what}:\n{_tail(log)}")
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; see {log}")


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _tls_context(keys: pki.Pki, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(keys.ca) if verify else None)
    if not verify:
        # kube-controller-manager serves a self-signed certificate of its own making.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(keys.cert("admin")), str(keys.key("admin")))
    return ctx


class Starter:
    """Starts the components of one ``up`` and records each in state.json as soon as it runs,
    so a failure half-way still leaves `down` everything it needs to clean up."""

    def __init__(self, cluster: Cluster, bin_dir: Path) -> None:
        self.cluster = cluster
        self.bin = bin_dir
        self.keys = pki.Pki(cluster.root / "pki")
        self.ports = {n: free_port() for n in ("etcd", "etcd-peer", "apiserver", "kcm")}
        self.state: dict[str, Any] = {
            "bin_dir": str(bin_dir),
            "ports": self.ports,
            "kubeconfig": str(cluster.kubeconfig),
            "node": NODE_NAME,
            "processes": [],
        }
        self._t0 = time.monotonic()
        self._save()

    def _save(self) -> None:
        tmp = self.cluster.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.cluster.state_file)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> procs.Proc:
        log_path = self.cluster.logs / f"{name}.log"
        self._t0 = time.monotonic()
        with log_path.open("ab") as log:
            proc, _ = procs.spawn(name, argv, log, env=env, cwd=self.cluster.root)
        self.state["processes"].append(proc.to_json())
        self._save()
        return proc

    def done(self, name: str) -> None:
        print(f"devcluster: {name} ready in {time.monotonic() - self._t0:.1f}s", file=sys.stderr)

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        argv = [
            str(self.bin / "etcd"),
            "--name=devcluster",
            f"--data-dir={self.cluster.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devcluster={peer}",
            # Test data: durability is not worth an fsync per write.
            "--unsafe-no-fsync=true",
            "--auto-compaction-retention=1",
        ]
        proc = self.spawn("etcd", argv)
        _wait("etcd /health", lambda: _http_ok(f"{client}/health"), proc, self._log(proc), 30)
        self.done("etcd")

    def _log(self, proc: procs.Proc) -> Path:
        return self.cluster.logs / f"{proc.name}.log"

    def apiserver(self) -> None:
        k = self.keys
        argv = [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            # Without it the apiserver looks for a default route, which a sandbox may not have.
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={k.cert('apiserver')}",
            f"--tls-private-key-file={k.key('apiserver')}",
            f"--client-ca-file={k.ca}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={k.sa_key}",
            f"--service-account-signing-key-file={k.sa_key}",
            "--authorization-mode=RBAC",
            # The ServiceAccount admission plugin stays on (unlike envtest): the controller
            # manager creates each namespace's "default" ServiceAccount, and pods get the
            # kube-api-access projected volume a real cluster gives them.
            "--allow-privileged=true",
            # No real Service network: do not keep writing a loopback endpoint for "kubernetes".
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        proc = self.spawn("kube-apiserver", argv)
        ctx = _tls_context(k, verify=True)
        url = f"{self.apiserver_url}/readyz"
        _wait("kube-apiserver /readyz", lambda: _http_ok(url, ctx), proc, self._log(proc), 90)
        self.done("kube-apiserver")

    def controller_manager(self) -> None:
        kubeconfig = self.cluster.root / "kcm.kubeconfig"
        write_kubeconfig(kubeconfig, self.apiserver_url, self.keys, "kube-controller-manager")
        argv = [
            str(self.bin / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            f"--cert-dir={self.cluster.root / 'kcm-certs'}",
            f"--service-account-private-key-file={self.keys.sa_key}",
            f"--root-ca-file={self.keys.ca}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
        ]
        proc = self.spawn("kube-controller-manager", argv)
        ctx = _tls_context(self.keys, verify=False)
        url = f"https://127.0.0.1:{self.ports['kcm']}/healthz"
        _wait(
            "kube-controller-manager /healthz",
            lambda: _http_ok(url, ctx),
            proc,
            self._log(proc),
            60,
        )
        self.done("kube-controller-manager")

    def kubelet(self) -> None:
        kubeconfig = self.cluster.root / "kubelet.kubeconfig"
        write_kubeconfig(kubeconfig, self.apiserver_url, self.keys, "kubelet")
        argv = [
            sys.executable,
            "-m",
            "devcluster.kubelet",
            f"--kubeconfig={kubeconfig}",
            f"--state-dir={self.cluster.root}",
            f"--node-name={NODE_NAME}",
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        proc = self.spawn("kubelet", argv, env=env)
        ready = self.cluster.root / "kubelet.ready"
        _wait("the kubelet", ready.exists, proc, self._log(proc), 30)
        self.done("kubelet")


def up(root: Path) -> Cluster:
    """Start the cluster in ``root`` (idempotent: a running cluster is left as it is)."""
    cluster = Cluster(root)
    if cluster.running():
        return cluster
    if cluster.processes():
        down(root)  # a half-dead previous run: clear it before reusing the directory
    bin_dir = build_binaries()
    for sub in ("logs", "pods", "pvcs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    starter = Starter(cluster, bin_dir)
    try:
        pki.generate(starter.keys.root)
        write_kubeconfig(cluster.kubeconfig, starter.apiserver_url, starter.keys, "admin")
        starter.etcd()
        starter.apiserver()
        starter.controller_manager()
        starter.kubelet()
    except BaseException:
        down(root)
        raise
    return cluster


def down(root: Path) -> list[str]:
    """Stop every recorded process (kubelet first) and delete the cluster's data; keep logs."""
    cluster = Cluster(root)
    by_name = {p.name: p for p in cluster.processes()}
    stopped = []
    for name in STOP_ORDER:
        proc = by_name.get(name)
        if proc is not None and proc.alive():
            procs.stop(proc, grace=15 if name == "kubelet" else 10)
            stopped.append(name)
    _stop_leftover_containers(root)
    for name in DISPOSABLE:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stopped


def _stop_leftover_containers(root: Path) -> None:
    """Kill containers a crashed kubelet left behind (it records one pid file per container)."""
    for pidfile in (root / "pods").glob("*/*.pid"):
        try:
            proc = procs.Proc.from_json(json.loads(pidfile.read_text()))
        except (OSError, ValueError, KeyError):
            continue
        procs.stop(proc, grace=2)
        pidfile.unlink(missing_ok=True)


def status(root: Path) -> list[tuple[str, str, str]]:
    """(component, pid, state) rows for `status`."""
    rows = []
    for proc in Cluster(root).processes():
        rows.append((proc.name, str(proc.pid), "running" if proc.alive() else "NOT RUNNING"))
    return rows
