"""One pod's life on the process-kubelet: bind, prepare, run containers, report status, delete.

Each pod gets a ``PodWorker`` thread, and each of its main containers a supervisor thread.
The worker owns the pod's status: it always writes the full status (JSON merge patch replaces
the lists), so what the API shows is exactly the worker's view.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster import podspec, procs

NSEXEC = Path(__file__).resolve().parent / "nsexec.py"
PROJECT_ROOT = NSEXEC.parent.parent
MESSAGE_LIMIT = 4096  # bytes of terminationMessagePath a kubelet keeps
LOG_FALLBACK_BYTES, LOG_FALLBACK_LINES = 2048, 80  # FallbackToLogsOnError
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # a kubelet's CrashLoopBackOff
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long starts the back-off afresh
CONFIG_RETRY = 2.0  # seconds between attempts to resolve a pending pod's Secrets/ConfigMaps
DEFAULT_GRACE = 30

log = logging.getLogger("devcluster.kubelet")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code(returncode: int) -> int:
    # Like a container runtime: death by signal N is exit code 128+N.
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class KubeletContext:
    """What every worker shares with the kubelet."""

    api: Any  # kubernetes.client.CoreV1Api
    node: podspec.NodeInfo
    state_dir: Path
    unshare: list[str]
    on_done: Callable[[str], None]

    @property
    def pvc_root(self) -> Path:
        return self.state_dir / "pvcs"


@dataclass
class ContainerStatus:
    """The kubelet's record of one container, rendered as a containerStatuses entry."""

    spec: dict[str, Any]
    is_init: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    backoff: float = 0.0  # seconds waited before the last restart; 0 before any

    def __post_init__(self) -> None:
        if not self.state:
            self.state = {"waiting": {"reason": "ContainerCreating"}}

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.state.get("terminated")
        return value

    def render(self) -> dict[str, Any]:
        return {
            "name": self.spec["name"],
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": "",
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restarts,
        }


@dataclass
class Run:
    """One started process of a container."""

    status: ContainerStatus
    proc: procs.Proc
    popen: subprocess.Popen[bytes]
    log_offset: int
    message_file: Path
    spec_file: Path
    pid_file: Path
    started_at: float


class PodWorker(threading.Thread):
    def __init__(self, ctx: KubeletContext, pod: dict[str, Any], restarts: int = 0) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = ctx.state_dir / "pods" / f"{self.ns}_{self.name}"
        self.deleting = threading.Event()  # deletionTimestamp seen: stop gracefully
        self.gone = threading.Event()  # the pod no longer exists: stop at once, report nothing
        self.lock = threading.RLock()
        spec = pod["spec"]
        self.init = [ContainerStatus(c, is_init=True) for c in spec.get("initContainers") or []]
        self.main = [ContainerStatus(c, restarts=restarts) for c in spec.get("containers") or []]
        for c in self.main:
            if self.init:
                c.state = {"waiting": {"reason": "PodInitializing"}}
        self.phase = "Pending"
        self.start_time = now()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.runs: dict[str, Run] = {}
        self.mounts: dict[str, list[podspec.Mount]] = {}
        self.envs: dict[str, dict[str, str]] = {}

    # ---- called from the watch thread -------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def vanish(self) -> None:
        self.gone.set()
        self.deleting.set()

    # ---- the pod's life ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._live()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
            self._kill_all(grace=0)
        finally:
            self.ctx.on_done(self.uid)

    def _live(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # A pod of the same name may have run before: its emptyDirs and projections go.
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        if not self._bind():
            return
        self.report()
        if not self._prepare() or not self._run_init_containers():
            self._finish()
            return
        threads = [
            threading.Thread(target=self._supervise, args=(c,), daemon=True) for c in self.main
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._finish()

    def _finish(self) -> None:
        """Write the terminal status and, for a deleted pod, remove it (a kubelet's last word)."""
        if self.gone.is_set():
            return
        if not self.phase_terminal():
            self.phase = self._terminal_phase()
        self.report()
        if self.deleting.is_set():
            self._force_delete()
        log.info("pod %s/%s: %s", self.ns, self.name, self.phase)

    def phase_terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def _terminal_phase(self) -> str:
        codes = [c.terminated["exitCode"] if c.terminated else None for c in self.main]
        return "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"

    def _force_delete(self) -> None:
        opts = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)
        )
        try:
            self.ctx.api.delete_namespaced_pod(self.name, self.ns, body=opts)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _bind(self) -> bool:
        """Bind an unscheduled pod to this node (there is no scheduler); False if it is gone."""
        if self.pod["spec"].get("nodeName"):
            return True
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": self.name, "uid": self.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.ctx.node.name},
        }
        try:
            # _preload_content=False: the client cannot deserialise the Binding response.
            self.ctx.api.create_namespaced_pod_binding(
                self.name, self.ns, body, _preload_content=False
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                log.info("pod %s/%s: not bound (%s)", self.ns, self.name, exc.reason)
                return False
            raise
        return True

    # ---- preparing volumes and env ------------------------------------------------------------

    def _prepare(self) -> bool:
        """Resolve volumes, env and commands; retried while config is missing, like a kubelet."""
        last = ""
        while not self.deleting.is_set():
            try:
                self._prepare_once()
                return True
            except podspec.ConfigError as exc:
                if str(exc) != last:
                    log.info("pod %s/%s: waiting: %s", self.ns, self.name, exc)
                    last = str(exc)
                    self._set_waiting("CreateContainerConfigError", last)
            self.deleting.wait(CONFIG_RETRY)
        return False

    def _set_waiting(self, reason: str, message: str) -> None:
        for c in self.init + self.main:
            if "waiting" in c.state:
                c.state = {"waiting": {"reason": reason, "message": message}}
        self.report()

    def _prepare_once(self) -> None:
        resolver = podspec.Resolver(self.ctx.api, self.ns)
        specs = list(self.pod["spec"].get("volumes") or [])
        builder = podspec.VolumeBuilder(
            resolver, self.pod, self.dir, self.ctx.pvc_root, self.ctx.node, self._request_token
        )
        volumes = {v["name"]: builder.build(v) for v in specs}
        by_name = {v["name"]: v for v in specs}
        for c in self.init + self.main:
            name = c.spec["name"]
            env = podspec.container_env(resolver, self.pod, c.spec, self.ctx.node)
            podspec.command_line(c.spec, env)  # fail now, not when the container starts
            mounts = c.spec.get("volumeMounts") or []
            self.envs[name] = env
            self.mounts[name] = podspec.container_mounts(mounts, volumes, by_name, env)

    def _sa_name(self) -> str:
        return str(self.pod["spec"].get("serviceAccountName") or "default")

    def _request_token(self, sa_name: str, expiry: int, audiences: list[str] | None) -> str:
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=audiences or [],
                expiration_seconds=expiry,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=self.name, uid=self.uid
                ),
            )
        )
        try:
            resp = self.ctx.api.create_namespaced_service_account_token(sa_name, self.ns, body)
        except ApiException as exc:
            raise podspec.ConfigError(f"token for serviceaccount {sa_name}: {exc.reason}") from exc
        return str(resp.status.token)

    # ---- running containers -------------------------------------------------------------------

    def _run_init_containers(self) -> bool:
        """Init containers one after the other, each to success (retried unless Never)."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for c in self.init:
            while True:
                code = self._run_to_end(c)
                if code == 0:
                    break
                if self.deleting.is_set() or policy == "Never":
                    self.phase = "Failed"
                    return False
                if not self._back_off(c, time.monotonic()):
                    return False
        for c in self.main:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        return not self.deleting.is_set()

    def _supervise(self, c: ContainerStatus) -> None:
        """Run a main container, restarting it as the pod's restartPolicy says."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            started = time.monotonic()
            code = self._run_to_end(c)
            if self.deleting.is_set() or policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            if not self._back_off(c, started):
                return

    def _back_off(self, c: ContainerStatus, started: float) -> bool:
        """CrashLoopBackOff before a restart; False if the pod is deleted meanwhile."""
        long_run = time.monotonic() - started > BACKOFF_RESET_AFTER
        c.backoff = BACKOFF_START if long_run or not c.backoff else min(BACKOFF_MAX, c.backoff * 2)
        with self.lock:
            c.last_state = {"terminated": c.terminated} if c.terminated else {}
            message = f"back-off {c.backoff:.0f}s restarting failed container"
            c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            self.report()
        if self.deleting.wait(c.backoff):
            return False
        c.restarts += 1  # counted when the restart happens, as a kubelet does
        return True

    def _run_to_end(self, c: ContainerStatus) -> int:
        if self.deleting.is_set():
            return 137
        run = self._start(c)
        with self.lock:
            c.state = {"running": {"startedAt": now()}}
            if not c.is_init:  # a pod running only its init containers is still Pending
                self.phase = "Running"
            self.report()
        code = self._wait(run)
        with self.lock:
            c.state = {"terminated": self._terminated(run, code)}
            self.report()
        return code

    def _start(self, c: ContainerStatus) -> Run:
        name = c.spec["name"]
        message_file = self.dir / f"{name}.termination-log"
        message_file.write_bytes(b"")
        spec_file = self.dir / f"{name}.spec.json"
        env = self.envs[name]
        mounts = [m.to_json() for m in self.mounts[name]]
        path = c.spec.get("terminationMessagePath") or "/dev/termination-log"
        mounts.append({"source": str(message_file), "target": path, "readonly": False})
        spec = {
            "argv": podspec.command_line(c.spec, env),
            "env": env,
            "mounts": mounts,
            "workdir": c.spec.get("workingDir") or "/",
            "scratch": str(self.dir / "ns"),
            "keep": sorted({sys.prefix, sys.base_prefix, str(PROJECT_ROOT)}),
        }
        spec_file.touch(mode=0o600)  # env may hold Secret values
        spec_file.write_text(json.dumps(spec))
        log_path = self.dir / f"{name}.log"
        with log_path.open("ab") as out:
            offset = out.tell()
            argv = [*self.ctx.unshare, sys.executable, "-I", str(NSEXEC), str(spec_file)]
            proc, popen = procs.spawn(name, argv, out, env={"PATH": os.defpath})
        pid_file = self.dir / f"{name}.pid"
        pid_file.write_text(json.dumps(proc.to_json()))
        log.info("pod %s/%s: started %s (pid %d)", self.ns, self.name, name, proc.pid)
        return Run(c, proc, popen, offset, message_file, spec_file, pid_file, time.monotonic())

    def _wait(self, run: Run) -> int:
        """Wait for the process; on pod deletion stop it within the grace period."""
        self.runs[run.status.spec["name"]] = run
        while True:
            try:
                returncode = run.popen.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if self.deleting.is_set():
                    procs.stop(run.proc, grace=0 if self.gone.is_set() else self._grace())
        procs.stop(run.proc, grace=0)  # whatever the main process left in its group
        del self.runs[run.status.spec["name"]]
        run.pid_file.unlink(missing_ok=True)
        run.spec_file.unlink(missing_ok=True)
        return exit_code(returncode)

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return float(grace)

    def _kill_all(self, grace: float) -> None:
        for run in list(self.runs.values()):
            procs.stop(run.proc, grace=grace)

    def _terminated(self, run: Run, code: int) -> dict[str, Any]:
        started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            seconds=time.monotonic() - run.started_at
        )
        result: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finishedAt": now(),
        }
        message = self._message(run, code)
        if message:
            result["message"] = message
        return result

    def _message(self, run: Run, code: int) -> str:
        with run.message_file.open("rb") as f:
            message = f.read(MESSAGE_LIMIT)
        policy = run.status.spec.get("terminationMessagePolicy", "File")
        if not message.strip() and code != 0 and policy == "FallbackToLogsOnError":
            message = self._log_tail(run)
        return message.decode(errors="replace")

    def _log_tail(self, run: Run) -> bytes:
        with (self.dir / f"{run.status.spec['name']}.log").open("rb") as f:
            f.seek(run.log_offset)
            output = f.read()
        tail = b"\n".join(output.splitlines()[-LOG_FALLBACK_LINES:])
        return tail[-LOG_FALLBACK_BYTES:]

    # ---- status -------------------------------------------------------------------------------

    def report(self) -> None:
        """PATCH the full pod status; a pod that is gone ends the worker's reporting.

        Under the lock, so two containers' updates cannot reach the API in the wrong order."""
        with self.lock:
            if self.gone.is_set():
                return
            try:
                self.ctx.api.patch_namespaced_pod_status(
                    self.name,
                    self.ns,
                    {"status": self._status()},
                    _content_type="application/merge-patch+json",
                )
            except ApiException as exc:
                if exc.status == 404:
                    self.vanish()
                else:
                    log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, exc)

    def _status(self) -> dict[str, Any]:
        inits_done = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.init)
        ready = self.phase == "Running" and all(c.running for c in self.main)
        return {
            "phase": self.phase,
            "startTime": self.start_time,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                self._condition("PodScheduled", True),
                self._condition("Initialized", inits_done),
                self._condition("ContainersReady", ready),
                self._condition("Ready", ready),
            ],
            "initContainerStatuses": [c.render() for c in self.init],
            "containerStatuses": [c.render() for c in self.main],
        }

    def _condition(self, kind: str, value: bool) -> dict[str, Any]:
        """A pod condition whose lastTransitionTime changes only when its status does."""
        text = "True" if value else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != text:
            self.transitions[kind] = (text, now())
        return {"type": kind, "status": text, "lastTransitionTime": self.transitions[kind][1]}


def stop_signal_all(workers: list[PodWorker]) -> None:
    """Kubelet shutdown: the containers go with it (the whole cluster is going down)."""
    for w in workers:
        w.vanish()
    deadline = time.monotonic() + 5
    for w in workers:
        for run in list(w.runs.values()):
            procs.signal_group(run.proc, signal.SIGTERM)
    for w in workers:
        for run in list(w.runs.values()):
            procs.stop(run.proc, grace=max(0.0, deadline - time.monotonic()))
