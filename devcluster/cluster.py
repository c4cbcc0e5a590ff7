"""Bring a devcluster up and down: a control plane on loopback (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) and one real node (containerd, the kubelet, the node
agent; node.py).

Everything a running cluster owns lives in one state directory, and in the node's slot
(``/run/devcluster/N``, a bridge, a cgroup root; see node.py)::

    <state>/state.json      pids (with start times), ports, slot, paths: what `down` reads
    <state>/kubeconfig      admin kubeconfig (client certificate, verified server certificate)
    <state>/pki/            CA, serving and client certificates, service-account key
    <state>/etcd/           etcd data
    <state>/logs/           one log file per component
    <state>/pods/<ns>_<pod>_<uid>/<container>/<n>.log   container output, written by the kubelet
    <state>/volumes/<ns>/<claim>-<uid>/                  local PersistentVolumes
    <state>/node/           containerd's images and snapshots, the node's configuration
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
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

from devcluster import image, node, pki, procs
from devcluster.errors import ClusterError

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
DEFAULT_STATE = Path.home() / ".cache" / "migrate-safe" / "devcluster" / "run"
NODE_NAME = "devcluster"
# Stopped first to last: the kubelet before the control plane it talks to; the pods, then
# containerd once nothing needs it any more; the node agent, which holds the node's slot, after
# the slot is cleared (see down()).
STOP_ORDER = (
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
    "containerd",
)
# Enough for Jobs, Deployments, garbage collection, namespaces, pod service-account tokens,
# the node's taints (node-lifecycle) and PersistentVolumeClaims (binder and protection).
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
    "node-lifecycle-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "pod-garbage-collector-controller",
)
# Data removed by `down`; logs/ and the pod logs are kept for a post-mortem.
DISPOSABLE = (
    "etcd",
    "pki",
    "volumes",
    "node",
    "kcm-certs",
    "scheduler-certs",
    "kubeconfig",
    "kcm.kubeconfig",
    "scheduler.kubeconfig",
    "kubelet.kubeconfig",
    "node-agent.ready",
    "state.json",
)


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

    @property
    def slot(self) -> node.Slot:
        return node.Slot(int(self.load_state()["slot"]))

    @property
    def node_ip(self) -> str:
        """The node's address: pods reach the node (and what it forwards) there."""
        return self.slot.node_ip

    def load_image(self, built: image.Image, alias: str | None = None) -> None:
        """Import a built image into the node, as a pull would (e.g. the project image from
        devcluster/image.py), and tag it ``alias`` too. Pods then name its reference (or the
        alias)."""
        node.import_image(self.slot, built, alias)

    def expose(self, port: int) -> str:
        """Make ``127.0.0.1:port`` of this machine reachable from pods at ``<node_ip>:port``
        (the node agent relays); return that host. For services that listen on loopback
        only, such as the tests' PostgreSQL."""
        exposed_file = self.root / "node" / "exposed.json"
        ports = set(json.loads(exposed_file.read_text())) if exposed_file.exists() else set()
        if port not in ports:
            tmp = exposed_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(ports | {port})))
            tmp.replace(exposed_file)
            agent = next(p for p in self.processes() if p.name == "node-agent")
            procs.signal_group(agent, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not _listening(self.node_ip, port):
            if time.monotonic() > deadline:
                raise ClusterError(f"the node agent does not forward port {port}; see logs/")
            time.sleep(0.05)
        return self.node_ip


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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

    def __init__(self, cluster: Cluster, bin_dir: Path, slot: node.Slot) -> None:
        self.cluster = cluster
        self.bin = bin_dir
        self.slot = slot
        self.keys = pki.Pki(cluster.root / "pki")
        names = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kubelet", "kubelet-health")
        self.ports = {n: free_port() for n in names}
        self.state: dict[str, Any] = {
            "bin_dir": str(bin_dir),
            "ports": self.ports,
            "kubeconfig": str(cluster.kubeconfig),
            "node": NODE_NAME,
            "slot": slot.to_json(),
            "processes": [],
        }
        self._t0 = time.monotonic()
        self._save()

    def _save(self) -> None:
        tmp = self.cluster.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.cluster.state_file)

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> procs.Proc:
        log_path = self.cluster.logs / f"{name}.log"
        self._t0 = time.monotonic()
        with log_path.open("ab") as log:
            proc, _ = procs.spawn(
                name, argv, log, env=env, cwd=self.cluster.root, pass_fds=pass_fds
            )
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
            # Its first address, the `kubernetes` Service's, is the node's (node.py).
            f"--service-cluster-ip-range={self.slot.service_range}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={k.sa_key}",
            f"--service-account-signing-key-file={k.sa_key}",
            "--authorization-mode=RBAC",
            # The ServiceAccount admission plugin stays on (unlike envtest): the controller
            # manager creates each namespace's "default" ServiceAccount, and pods get the
            # kube-api-access projected volume a real cluster gives them.
            "--allow-privileged=true",
            # No Service network (no kube-proxy): the node agent answers for "kubernetes".
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # Logs and exec: the apiserver calls the kubelet and verifies its certificate.
            f"--kubelet-client-certificate={k.cert('apiserver-kubelet')}",
            f"--kubelet-client-key={k.key('apiserver-kubelet')}",
            f"--kubelet-certificate-authority={k.ca}",
            "--kubelet-preferred-address-types=InternalIP",
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

    def scheduler(self) -> None:
        kubeconfig = self.cluster.root / "scheduler.kubeconfig"
        write_kubeconfig(kubeconfig, self.apiserver_url, self.keys, "kube-scheduler")
        argv = [
            str(self.bin / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            f"--cert-dir={self.cluster.root / 'scheduler-certs'}",
        ]
        proc = self.spawn("kube-scheduler", argv)
        ctx = _tls_context(self.keys, verify=False)
        url = f"https://127.0.0.1:{self.ports['scheduler']}/healthz"
        _wait("kube-scheduler /healthz", lambda: _http_ok(url, ctx), proc, self._log(proc), 60)
        self.done("kube-scheduler")

    def agent(self, slot_lock: int) -> None:
        argv = [
            sys.executable,
            "-m",
            "devcluster.agent",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--state-dir={self.cluster.root}",
            f"--node-ip={self.slot.node_ip}",
            f"--node-name={NODE_NAME}",
            f"--apiserver-port={self.ports['apiserver']}",
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        proc = self.spawn("node-agent", argv, env=env, pass_fds=(slot_lock,))
        ready = self.cluster.root / "node-agent.ready"
        _wait("the node agent", ready.exists, proc, self._log(proc), 30)
        self.done("node-agent")

    def containerd(self, sandbox: image.Image) -> int:
        """Start containerd (with the sandbox image imported); return its pid, whose mount
        namespace the kubelet joins."""
        node_dir = self.cluster.root / "node"
        config = node.write_containerd_config(self.slot, node_dir, sandbox.ref)
        proc = self.spawn("containerd", node.containerd_argv(self.slot, config))
        _wait("containerd", lambda: node.containerd_ready(self.slot), proc, self._log(proc), 30)
        node.import_image(self.slot, sandbox)
        self.done("containerd")
        return proc.pid

    def kubelet(self, containerd_pid: int) -> None:
        kubeconfig = self.cluster.root / "kubelet.kubeconfig"
        write_kubeconfig(kubeconfig, self.apiserver_url, self.keys, "kubelet")
        ports = node.KubeletPorts(self.ports["kubelet"], self.ports["kubelet-health"])
        config = node.write_kubelet_config(
            self.slot, self.cluster.root / "node", self.keys.root, self.cluster.root / "pods", ports
        )
        node.make_cgroup_root(self.slot)
        argv = node.kubelet_argv(self.bin, self.slot, config, kubeconfig, NODE_NAME)
        proc = self.spawn("kubelet", node.in_node_namespace(containerd_pid, argv))
        ctx = _tls_context(self.keys, verify=True)
        url = f"{self.apiserver_url}/api/v1/nodes/{NODE_NAME}"
        _wait("the node to be Ready", lambda: _schedulable(url, ctx), proc, self._log(proc), 90)
        self.done("kubelet")


def _schedulable(node_url: str, context: ssl.SSLContext) -> bool:
    """The node is Ready and the node-lifecycle controller has lifted its not-ready taint."""
    try:
        with urllib.request.urlopen(node_url, timeout=2, context=context) as resp:
            obj = json.load(resp)
    except OSError:
        return False
    conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
    taints = [t for t in obj.get("spec", {}).get("taints", []) if t["effect"] == "NoSchedule"]
    return conditions.get("Ready") == "True" and not taints


def up(root: Path) -> Cluster:
    """Start the cluster in ``root`` (idempotent: a running cluster is left as it is)."""
    cluster = Cluster(root)
    if cluster.running():
        return cluster
    if cluster.processes():
        down(root)  # a half-dead previous run: clear it before reusing the directory
    node.check_host()
    bin_dir = build_binaries()
    sandbox = image.ensure_pause(bin_dir / "pause")
    for sub in ("logs", "pods", "volumes", "node"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    slot, slot_lock = node.claim_slot()
    starter = Starter(cluster, bin_dir, slot)
    try:
        pki.generate(starter.keys.root, slot.node_ip, NODE_NAME)
        write_kubeconfig(cluster.kubeconfig, starter.apiserver_url, starter.keys, "admin")
        node.create_network(slot)
        starter.etcd()
        starter.apiserver()
        starter.controller_manager()
        starter.scheduler()
        starter.agent(slot_lock)
        starter.kubelet(starter.containerd(sandbox))
    except BaseException:
        down(root)
        node.release(slot)  # down() leaves it alone: this process still holds its lock
        raise
    finally:
        os.close(slot_lock)  # the node agent holds the slot from now on
    return cluster


def down(root: Path) -> list[str]:
    """Stop every recorded process, the pods and the node, and delete the cluster's data;
    keep the logs (components' and containers')."""
    cluster = Cluster(root)
    by_name = {p.name: p for p in cluster.processes()}
    agent = by_name.pop("node-agent", None)
    slot = cluster.slot if "slot" in cluster.load_state() else None
    # The slot is this cluster's while its agent lives; after a crash, only if no other
    # cluster has taken it since (then its lock is held, and nothing in it is ours).
    lock = None
    if slot is not None and not (agent is not None and agent.alive()):
        lock = node.lock_slot(slot)
    owned = slot is not None and (lock is not None or (agent is not None and agent.alive()))
    stopped = []
    for name in STOP_ORDER:
        if name == "containerd" and slot is not None and owned:
            # The kubelet is gone: the pods' processes, then the shims that watched them.
            node.kill_pods(slot)
            node.kill_shims(slot)
        proc = by_name.get(name)
        if proc is not None and proc.alive():
            procs.stop(proc, grace=10)
            stopped.append(name)
    if slot is not None and owned:
        node.release(slot)
    if agent is not None and agent.alive():
        procs.stop(agent, grace=10)
        stopped.append("node-agent")
    if lock is not None:
        os.close(lock)
    for name in DISPOSABLE:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stopped


def status(root: Path) -> list[tuple[str, str, str]]:
    """(component, pid, state) rows for `status`."""
    rows = []
    for proc in Cluster(root).processes():
        rows.append((proc.name, str(proc.pid), "running" if proc.alive() else "NOT RUNNING"))
    return rows
