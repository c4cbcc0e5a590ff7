"""Faults the end-to-end suite injects into a devcluster and its PostgreSQL: SIGKILL of the
operator at a point read from the API, SIGKILL of a Job's harness process on the node, a restart
of PostgreSQL or of a control-plane component, a network cut between the operator and the API
server, and a full backup volume."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster import procs
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres
from tests.e2e.conftest import OperatorProcess

POLL = 0.05  # fast enough to stop between two steps of the operator, which are API calls


def container_state(core: Api, namespace: str, phase: str) -> str | None:
    """running | terminated | waiting: the harness container of the phase's newest pod."""
    selector = f"migrate-safe.dev/phase={phase}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for status in pod.status.container_statuses or []:
            state = status.state
            if state.terminated is not None:
                return "terminated"
            if state.running is not None:
                return "running"
            return "waiting"
    return None


def kill_operator_when(
    operator: OperatorProcess, what: str, check: Callable[[], bool], timeout: float = 180
) -> float:
    """SIGKILL the operator the first time `check` holds (polled every POLL seconds); the
    monotonic time of the kill."""
    wait_for(what, check, timeout, every=POLL)
    operator.kill()
    return time.monotonic()


# --- the harness in a Job's pod -----------------------------------------------------------------


def harness_pids(core: Api, namespace: str, phase: str) -> list[int]:
    """Host pids of the `migrate-safe <phase>` process in the phase's running pod: the node
    runs containers as host processes, each in its pod's cgroup (…/pod<uid>/…)."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"migrate-safe.dev/phase={phase}")
    uids = {f"pod{p.metadata.uid}" for p in pods.items if p.status.phase == "Running"}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(uid in cgroups for uid in uids) and any(b"migrate-safe" in a for a in argv):
            found.append(int(entry.name))
    return found


def kill_harness(core: Api, namespace: str, phase: str) -> int:
    """SIGKILL the harness of the phase's running Job: no signal handler, no result."""
    pids = wait_for(
        f"the {phase} harness process", lambda: harness_pids(core, namespace, phase), 30
    )
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


# --- PostgreSQL ---------------------------------------------------------------------------------


def restart_postgres(pg: LocalPostgres, mode: str) -> None:
    """`pg_ctl restart -m fast|immediate`: fast ends every session (57P01), immediate crashes
    the server and recovers from WAL. Same port, same data."""
    # -l: the new server's output goes to its log, not to a pipe this call would wait on.
    command = [pg.bin("pg_ctl"), "-D", str(pg.datadir), "-l", str(pg.logfile), "-m", mode]
    command += ["-w", "-t", "60", "restart"]
    if pg.as_service_user:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=90)


# --- the control plane --------------------------------------------------------------------------


def restart_component(cluster: devcluster.Cluster, name: str, down_seconds: float = 0) -> None:
    """Stop a component of the cluster (SIGTERM, SIGKILL after 10 s), keep it down for
    `down_seconds`, start it again with the same command line and record the new process where
    `devcluster.down` finds it."""
    state = cluster.load_state()
    entries = state["processes"]
    index = next(i for i, p in enumerate(entries) if p["name"] == name)
    old = procs.Proc.from_json(entries[index])
    argv = [a.decode() for a in Path(f"/proc/{old.pid}/cmdline").read_bytes().split(b"\0") if a]
    procs.stop(old)
    time.sleep(down_seconds)  # the outage itself is the fault being injected
    with (cluster.logs / f"{name}.log").open("ab") as log:
        new, _ = procs.spawn(name, argv, log, cwd=cluster.root)
    entries[index] = new.to_json()
    tmp = cluster.state_file.with_suffix(".restart")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(cluster.state_file)


def api_answers(core: Api) -> bool:
    try:
        core.list_namespace(limit=1, _request_timeout=5)
    except (ApiException, OSError, urllib3.exceptions.HTTPError):  # refused, 5xx: not yet
        return False
    return True


# --- the operator's network ---------------------------------------------------------------------


class CuttableProxy:
    """A TCP relay between the operator and the API server that can stop forwarding without
    closing anything: a network partition as the operator sees it (no RST, no FIN, silence)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def cut(self) -> None:
        self.forwarding.clear()

    def heal(self) -> None:
        self.forwarding.set()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self.forwarding.wait()  # a connection made during the cut hangs, as a SYN would
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        self.sockets += [client, server]
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self.stopped.is_set():
                if not self.forwarding.wait(timeout=0.5):
                    continue  # silence until healed: nothing read, nothing written, nothing closed
                for key, _ in selector.select(timeout=0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                        if not data:
                            raise OSError("closed")
                        peers[sock].sendall(data)
                    except OSError:
                        for each in peers:
                            each.close()
                        return


def kubeconfig_through(kubeconfig: Path, port: int, target: Path) -> Path:
    """A copy of `kubeconfig` whose server is 127.0.0.1:`port` (the API server's certificate
    names 127.0.0.1, so TLS is verified as before)."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    target.write_text(yaml.safe_dump(config))
    return target


def apiserver_address(kubeconfig: Path) -> tuple[str, int]:
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    return host, int(port)


# --- volumes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_volume(cluster: devcluster.Cluster, path: str, size: str) -> Iterator[None]:
    """Mount a tmpfs of `size` on a local PersistentVolume's directory, in the node's mount
    namespace (where the kubelet mounts volumes): a volume that fills up."""
    containerd = next(p for p in cluster.processes() if p.name == "containerd")
    enter = ["nsenter", "-t", str(containerd.pid), "-m", "--"]
    options = f"size={size},mode=0777"
    subprocess.run([*enter, "mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
    try:
        yield
    finally:
        subprocess.run([*enter, "umount", "-l", path], check=False)
