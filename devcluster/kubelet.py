"""The process-kubelet: runs the devcluster's pods as local processes.

    python -m devcluster.kubelet --kubeconfig K --state-dir D [--node-name N]

It registers a Node, then watches all pods. A pod with no node (there is no scheduler) is bound
to this node and run by a ``PodWorker``; a pod bound here that is being deleted after it finished
is removed at once, as a kubelet does. See podworker.py for what a pod's life looks like and
README.md for what is (not) supported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from devcluster import podspec, procs
from devcluster.podworker import KubeletContext, PodWorker, now, stop_signal_all

WATCH_TIMEOUT = 300  # seconds; the watch is simply re-opened
TERMINAL = ("Succeeded", "Failed")

log = logging.getLogger("devcluster.kubelet")


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave the watch (a BaseException, so no
    ``except Exception`` in the client library swallows it)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def unshare_prefix() -> list[str]:
    # As a normal user a private mount namespace needs a user namespace (mapped to root) too.
    base = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        base[1:1] = ["--user", "--map-root-user"]
    return [*base, "--"]


class Kubelet:
    def __init__(self, api: Any, ctx_args: dict[str, Any]) -> None:
        self.api = api
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()  # uids this kubelet must never run (again)
        self.lock = threading.Lock()
        self.ctx = KubeletContext(api=api, on_done=self._worker_done, **ctx_args)

    @property
    def node(self) -> str:
        return self.ctx.node.name

    def _worker_done(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)
            self.finished.add(uid)

    # ---- start-up ---------------------------------------------------------------------------

    def register_node(self) -> None:
        """A Ready Node, so the pods' nodeName names something (nothing evicts from it: the
        node-lifecycle controller does not run)."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux"},
            },
        }
        try:
            self.api.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "devcluster process-kubelet is running",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": now(),
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "devcluster",
                "operatingSystem": "linux",
                "architecture": os.uname().machine,
            },
        }
        self.api.patch_node_status(self.node, {"status": status})

    def kill_leftovers(self) -> None:
        """Containers of a previous kubelet that died without stopping them."""
        for pidfile in (self.ctx.state_dir / "pods").glob("*/*.pid"):
            try:
                proc = procs.Proc.from_json(json.loads(pidfile.read_text()))
            except (OSError, ValueError, KeyError):
                continue
            log.info("stopping leftover container process %d (%s)", proc.pid, pidfile)
            procs.stop(proc, grace=2)
            pidfile.unlink(missing_ok=True)

    def recover(self, pod: dict[str, Any]) -> None:
        """A pod this node ran before a kubelet restart: its processes are gone."""
        spec, status = pod["spec"], pod.get("status") or {}
        uid = pod["metadata"]["uid"]
        if status.get("phase") in TERMINAL or pod["metadata"].get("deletionTimestamp"):
            return  # handled by the normal path (ignored / force-deleted)
        ran = any(
            set(cs.get("state") or {}) & {"running", "terminated"}
            for cs in status.get("containerStatuses") or []
        )
        if not ran:
            return
        if spec.get("restartPolicy", "Always") == "Always":
            # A long-running pod comes back, as after a node reboot.
            restarts = max(
                (cs.get("restartCount", 0) for cs in status.get("containerStatuses") or []),
                default=0,
            )
            self._start_worker(pod, restarts + 1)
            return
        # Re-running a Job's pod behind the Job controller's back could run a migration twice.
        self.finished.add(uid)
        self._fail_lost(pod)

    def _fail_lost(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        terminated = {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "finishedAt": now(),
            "message": "the process-kubelet restarted while the container ran",
        }
        statuses = [
            dict(cs, state={"terminated": terminated}, ready=False, started=False)
            for cs in (pod.get("status") or {}).get("containerStatuses") or []
        ]
        body = {
            "status": {
                "phase": "Failed",
                "reason": "KubeletRestarted",
                "message": "the process-kubelet restarted; the pod's processes were lost",
                "containerStatuses": statuses,
            }
        }
        log.info("pod %s/%s: marked Failed (kubelet restart)", meta["namespace"], meta["name"])
        self.api.patch_namespaced_pod_status(
            meta["name"], meta["namespace"], body, _content_type="application/merge-patch+json"
        )

    # ---- the watch ----------------------------------------------------------------------------

    def sync(self) -> str:
        """List all pods, act on each, and return the resourceVersion to watch from."""
        pods = self.api.list_pod_for_all_namespaces(_preload_content=False)
        data = json.loads(pods.data)
        seen = set()
        for pod in data["items"]:
            seen.add(pod["metadata"]["uid"])
            self.handle("ADDED", pod)
        with self.lock:
            lost = [w for uid, w in self.workers.items() if uid not in seen]
        for w in lost:
            w.vanish()
        return str(data["metadata"]["resourceVersion"])

    def watch_forever(self, resource_version: str) -> None:
        while True:
            try:
                resource_version = self._watch(resource_version)
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                # 410 Gone (the resourceVersion is too old) or a dropped connection: events
                # may have been missed, so list afresh and reconcile.
                log.info("watch interrupted (%s); re-listing", exc)
                time.sleep(1)
                resource_version = self.sync()

    def _watch(self, resource_version: str) -> str:
        """Follow pod events until the server ends the watch; return where to resume."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        for event in w.stream(  # type: ignore[no-untyped-call]
            self.api.list_pod_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=WATCH_TIMEOUT,
            allow_watch_bookmarks=True,
            deserialize=False,
        ):
            obj = event["object"]
            resource_version = obj["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                self.handle(event["type"], obj)
        return resource_version

    def handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        node = spec.get("nodeName")
        if node and node != self.node:
            return
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker:
                worker.vanish()
            return
        if worker:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if uid in self.finished or phase in TERMINAL:
            if meta.get("deletionTimestamp") and node:
                self._force_delete(pod)
            return
        if meta.get("deletionTimestamp"):
            if node:
                self._force_delete(pod)
            return
        self._start_worker(pod, 0)

    def _start_worker(self, pod: dict[str, Any], restarts: int) -> None:
        worker = PodWorker(self.ctx, pod, restarts)
        with self.lock:
            self.workers[pod["metadata"]["uid"]] = worker
        worker.start()

    def _force_delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        opts = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.api.delete_namespaced_pod(meta["name"], meta["namespace"], body=opts)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        stop_signal_all(workers)


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{line.split()[1]}Ki"
    return "0"


def _api(kubeconfig: Path) -> tuple[Any, int]:
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=cfg
    )
    # One connection per concurrently reporting pod worker plus the watch.
    cfg.connection_pool_maxsize = 32
    port = int(cfg.host.rsplit(":", 1)[1])
    return client.CoreV1Api(client.ApiClient(cfg)), port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devcluster.kubelet")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="devcluster")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    api, port = _api(args.kubeconfig)
    ready_file = args.state_dir / "kubelet.ready"
    ready_file.unlink(missing_ok=True)
    node = podspec.NodeInfo(args.node_name, port, os.environ.get("PATH", os.defpath))
    kubelet = Kubelet(api, {"node": node, "state_dir": args.state_dir, "unshare": unshare_prefix()})
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        kubelet.register_node()
        kubelet.kill_leftovers()
        _recover_all(kubelet)
        resource_version = kubelet.sync()
        ready_file.write_text(str(os.getpid()))
        log.info("process-kubelet ready (node %s)", node.name)
        kubelet.watch_forever(resource_version)
    except Shutdown as exc:
        log.info("stopping on %s", exc)
    finally:
        kubelet.shutdown()
        ready_file.unlink(missing_ok=True)


def _recover_all(kubelet: Kubelet) -> None:
    pods = json.loads(
        kubelet.api.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={kubelet.node}", _preload_content=False
        ).data
    )
    for pod in pods["items"]:
        kubelet.recover(pod)


if __name__ == "__main__":
    main()
