"""The node agent: what a node of a real cluster gets from kube-proxy and a storage
provisioner, for the one Service and the one kind of volume the devcluster needs.

    python -m devcluster.agent --kubeconfig K --state-dir D --node-ip IP --apiserver-port P

* **Forwarding** (TCP, on the node's address, which pods reach through the bridge):
  port 443 to the apiserver on loopback — the ``kubernetes`` Service's ClusterIP is the node's
  address, so in-cluster clients work without kube-proxy — and every port listed in
  ``<state>/node/exposed.json`` to the same port on 127.0.0.1, so that pods reach a service of
  this machine that listens on loopback only (the tests' PostgreSQL). SIGHUP re-reads the list.
* **Local volumes**: a default StorageClass ``local``; each PersistentVolumeClaim the
  PersistentVolume controller hands to this provisioner gets a directory under
  ``<state>/volumes/`` and a ``local`` PersistentVolume bound to it, which the kubelet mounts.
  A released volume is deleted with its directory.
* It holds the node's slot lock (an inherited file descriptor) for as long as it lives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

PROVISIONER = "devcluster.local/local-volume"
STORAGE_CLASS = "local"
PROVISIONER_KEYS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
WATCH_TIMEOUT = 300

log = logging.getLogger("devcluster.agent")


# ---- forwarding -------------------------------------------------------------------------------


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reset: Callable[[], None]
) -> None:
    """Copy one direction; an end of stream is passed on as one (half-close). A reset or any
    other error ends both directions at once: a server that resets its side (as PostgreSQL's
    shutdown can) must not leave the client waiting on a connection that stays open."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        reset()
        return
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _relay(
    target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError as exc:
        log.info("forward to %s:%d failed: %s", *target, exc)
        writer.close()
        return

    def reset() -> None:
        for w in (writer, up_writer):
            w.transport.abort()

    await asyncio.gather(_pipe(reader, up_writer, reset), _pipe(up_reader, writer, reset))
    for w in (writer, up_writer):
        w.close()


@dataclass
class Forwarder:
    """Listeners on the node's address, each relaying to a port on loopback."""

    node_ip: str
    fixed: dict[int, int]  # node port -> loopback port
    exposed_file: Path
    servers: dict[int, asyncio.Server]

    def wanted(self) -> dict[int, int]:
        ports = dict(self.fixed)
        if self.exposed_file.exists():
            ports.update({int(p): int(p) for p in json.loads(self.exposed_file.read_text())})
        return ports

    async def reload(self) -> None:
        wanted = self.wanted()
        for port in set(self.servers) - set(wanted):
            self.servers.pop(port).close()
        for port, target in wanted.items():
            if port in self.servers:
                continue

            async def handle(
                r: asyncio.StreamReader, w: asyncio.StreamWriter, to: int = target
            ) -> None:
                await _relay(("127.0.0.1", to), r, w)

            self.servers[port] = await asyncio.start_server(handle, self.node_ip, port)
            log.info("forwarding %s:%d to 127.0.0.1:%d", self.node_ip, port, target)


# ---- local volumes ----------------------------------------------------------------------------


@dataclass
class Provisioner:
    core: Any  # kubernetes.client.CoreV1Api
    storage: Any  # kubernetes.client.StorageV1Api
    volumes_dir: Path
    node_name: str

    def ensure_storage_class(self) -> None:
        body = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            # One node: a claim can be bound as soon as it exists.
            "volumeBindingMode": "Immediate",
        }
        try:
            self.storage.create_storage_class(body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def on_claim(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        annotations = meta.get("annotations") or {}
        mine = any(annotations.get(k) == PROVISIONER for k in PROVISIONER_KEYS)
        if not mine or spec.get("volumeName") or meta.get("deletionTimestamp"):
            return
        directory = self.volumes_dir / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # as local-path provisioners do: any pod user may write
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{meta['uid']}",
                "annotations": {PROVISIONED_BY: PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "local": {"path": str(directory)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [self.node_name],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        }
        try:
            self.core.create_persistent_volume(volume)
            log.info("provisioned %s for %s/%s", directory, meta["namespace"], meta["name"])
        except ApiException as exc:
            if exc.status != 409:
                raise

    def on_volume(self, volume: dict[str, Any]) -> None:
        meta, spec = volume["metadata"], volume["spec"]
        ours = (meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
        released = (volume.get("status") or {}).get("phase") in ("Released", "Failed")
        if not ours or not released or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path(spec["local"]["path"])
        if self.volumes_dir in path.parents:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(meta["name"])
            log.info("deleted %s and %s", meta["name"], path)
        except ApiException as exc:
            if exc.status != 404:
                raise


def follow(list_call: Callable[..., Any], handle: Callable[[dict[str, Any]], None]) -> None:
    """List, handle every object, then watch; start over after any interruption."""
    while True:
        try:
            listing = json.loads(list_call(_preload_content=False).data)
            for obj in listing["items"]:
                handle(obj)
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                list_call,
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=WATCH_TIMEOUT,
                deserialize=False,
            )
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    handle(event["object"])
        except Exception:
            log.exception("watch interrupted; listing again")
            time.sleep(1)


# ---- main -------------------------------------------------------------------------------------


def _api(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=cfg
    )
    return client.ApiClient(cfg)


async def serve(forwarder: Forwarder, ready: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(forwarder.reload()))
    await forwarder.reload()
    ready.write_text("ok")
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devcluster.agent")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--apiserver-port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    api = _api(args.kubeconfig)
    core = client.CoreV1Api(api)
    provisioner = Provisioner(
        core, client.StorageV1Api(api), args.state_dir / "volumes", args.node_name
    )
    provisioner.ensure_storage_class()
    for list_call, handle in (
        (core.list_persistent_volume_claim_for_all_namespaces, provisioner.on_claim),
        (core.list_persistent_volume, provisioner.on_volume),
    ):
        threading.Thread(target=follow, args=(list_call, handle), daemon=True).start()
    forwarder = Forwarder(
        args.node_ip, {443: args.apiserver_port}, args.state_dir / "node" / "exposed.json", {}
    )
    asyncio.run(serve(forwarder, args.state_dir / "node-agent.ready"))


if __name__ == "__main__":
    main()
