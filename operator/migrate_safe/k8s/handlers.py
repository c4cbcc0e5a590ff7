"""kopf registrations, in one place so the whole event surface reads at a glance.

kopf watches; the controller (controller.py) reconciles. A change of a DatabaseMigration, of
one of its Jobs or of one of their pods puts the resource on the controller's queue, so a phase
follows its Job's completion at once, and nothing runs while nothing changes: no timer per
resource. One pass reads the caches kopf keeps from the watches (no list calls), asks the pure
state machine (reconcile.py) what to do and carries it out (actions.py) in a worker thread,
the `kubernetes` client being synchronous.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import kopf
import kubernetes

from migrate_safe.k8s import actions, jobs, kube, metrics
from migrate_safe.k8s.actions import GROUP, KIND, PLURAL, VERSION, plain
from migrate_safe.k8s.controller import Controller, Key
from migrate_safe.k8s.reconcile import MUTATING, JobView, World, decide
from migrate_safe.k8s.spec import DatabaseMigrationSpec, SpecError, parse_spec

FORCE_DELETE = f"{GROUP}/force-delete"
CRD_NAME = f"{PLURAL}.{GROUP}"
WORKERS = 16
# A pass waits on the API server far longer than it computes: each worker needs a thread of
# its own for that wait. asyncio's default pool has min(32, cores + 4) threads, 6 on a 2-core
# node, which left most workers queueing for a thread while 200 new resources waited for their
# first Job. Threads are started only when all are busy. The 8 beyond the workers are for the
# set controller's 2 workers (fleet_handlers) and kopf's own calls of plain functions (the
# deletion handler), which share this pool.
PASS_THREADS = WORKERS + 8
# Replicas started together each see only their own peering record at first, and resume; each
# pauses once it sees a preferred peer, well within this. Work waits for it, so two replicas
# are never active at once.
PEER_SETTLE_SECONDS = 5.0

log = logging.getLogger("migrate_safe.operator")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Own every name kopf writes, then start the controller over kopf's caches."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # kopf keeps the last handled body in an annotation to diff against. No handler of ours
    # reacts to a spec diff (a pass compares generations), and a copy of the spec there would
    # cap it at the 256 KiB every annotation shares: an inline source over it failed kopf's
    # every patch. So the copy leaves the spec out.
    settings.persistence.diffbase_storage = MetadataDiffBase(
        prefix=GROUP, key="last-handled-spec", ignored_fields=["spec"]
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING  # our own Events tell the story, not log lines
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 5
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(PASS_THREADS, thread_name_prefix="pass")
    )
    await asyncio.to_thread(kube.api_client)  # reads the configuration once, off the loop
    caches = Caches(kwargs["resource_index"], kwargs["job_index"], kwargs["pod_index"])
    job_settings = jobs.JobSettings(
        image=os.environ.get("MIGRATE_SAFE_JOB_IMAGE", jobs.JobSettings.image),
        command=tuple(shlex.split(os.environ.get("MIGRATE_SAFE_JOB_COMMAND", "migrate-safe"))),
    )
    controller = Controller(partial(reconcile, caches, job_settings), caches.keys, WORKERS)
    controller.start()
    memo["caches"], memo["controller"] = caches, controller
    memo["settle"] = 0.0 if settings.peering.standalone else PEER_SETTLE_SECONDS
    memo["controllers"] = [controller]  # fleet_handlers adds its own


class MetadataDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base over what it keeps here, labels and annotations, without first
    deep-copying the whole body (status, managedFields) on every watch event: that copy was
    the operator's largest cost per event. The essence is the same as kopf's own."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        meta = body.get("metadata", {})
        kept = {key: meta[key] for key in ("labels", "annotations") if key in meta}
        light = cast(kopf.RawBody, {"metadata": kept})
        return super().build(body=kopf.Body(light), extra_fields=extra_fields)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for controller in memo["controllers"]:
        await controller.stop()


def _our_crd(name: str, **_: Any) -> bool:
    return name == CRD_NAME


@kopf.daemon("apiextensions.k8s.io", "v1", "customresourcedefinitions", when=_our_crd)
async def leadership(stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    """Work while this replica is the active one: kopf stops daemons when peering pauses the
    operator, and starts them again when it resumes."""
    controllers: list[Controller] = memo["controllers"]
    if memo["settle"] and await stopped.wait(memo["settle"]):
        return  # paused in favour of a peer before it settled
    # One line per change of role: with replicas, the logs say which one works.
    log.info("active: this replica reconciles")
    for controller in controllers:
        controller.activate()
    try:
        await stopped.wait()
    finally:
        for controller in controllers:
            controller.deactivate()
        log.info("inactive: paused by peering or stopping")


# --- what kopf keeps from the watches ----------------------------------------------------------
# The indexers are coroutines: kopf runs a plain function in a thread, one hop per watch
# event for what is a dict built in microseconds.


@kopf.index(GROUP, VERSION, PLURAL)
async def resource_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], kube.KubeObject]:
    return {(namespace, name): snapshot(body)}


@kopf.index("batch", "v1", "jobs", labels=jobs.MANAGED_LABELS)
async def job_index(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    meta: kopf.Meta,
    status: kopf.Status,
    **_: Any,
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """The operator's Jobs by owning resource name, kept from the watch: no list calls. The
    owner's UID tells the incarnations of one name apart."""
    return {
        (namespace, labels.get(jobs.LABEL_RESOURCE, "")): {
            "name": name,
            "phase": labels.get(jobs.LABEL_PHASE, ""),
            "generation": int(labels.get(jobs.LABEL_GENERATION, "0")),
            "attempt": int(labels.get(jobs.LABEL_ATTEMPT, "1")),
            "owner_uid": labels.get(jobs.LABEL_OWNER_UID) or _owner_uid(meta),
            "status": plain(status),
        }
    }


@kopf.index("", "v1", "pods", labels=jobs.MANAGED_LABELS)
async def pod_index(
    namespace: str | None, labels: Mapping[str, str], status: kopf.Status, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Each Job pod's termination message (the harness's result) or why it cannot start."""
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""
    return {(namespace, job): actions.pod_outcome(plain(status))}


# --- what wakes a resource ----------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo["controller"].enqueue((str(namespace), name))


@kopf.on.event("batch", "v1", "jobs", labels=jobs.MANAGED_LABELS)
@kopf.on.event("", "v1", "pods", labels=jobs.MANAGED_LABELS)
async def child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A Job or pod of ours changed: its resource decides its next step now."""
    owner = memo["caches"].owner(str(namespace), labels.get(jobs.LABEL_RESOURCE, ""))
    if owner is not None:
        memo["controller"].enqueue(owner)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def hold_deletion(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The finalizer holds a deletion while a Job of ours changes the database: a GitOps prune
    during an apply must not kill it midway (a dirty ledger, a half-built index). Annotate
    `migrate-safe.dev/force-delete: "true"` to delete at once (the Job is then stopped)."""
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    uid = str(body.metadata.uid)
    caches: Caches = memo["caches"]
    busy = [
        job
        for job in caches.jobs(namespace, name).values()
        if job.owner_uid == uid and job.phase in MUTATING and not job.finished
    ]
    forced = (body.metadata.annotations or {}).get(FORCE_DELETE) == "true"
    if busy and not forced:
        job = busy[0]
        message = (
            f"deletion waits for {job.phase} Job {job.name} to finish (it changes the "
            f'database); annotate {FORCE_DELETE}="true" to delete now and stop it'
        )
        log.warning("%s/%s: %s", namespace, name, message)
        raise kopf.TemporaryError(message, delay=5)
    metrics.METRICS.forget(namespace, name)
    caches.forget((namespace, name))


# --- one pass ------------------------------------------------------------------------------------


class Caches:
    """kopf's indexes, read on the event loop only, plus the resource as our own last status
    write returned it: a pass never decides on a body older than what it wrote itself."""

    def __init__(
        self,
        resources: kopf.Index[Any, kube.KubeObject],
        job_index: kopf.Index[Any, Any],
        pod_index: kopf.Index[Any, Any],
    ) -> None:
        self.resources, self.job_index, self.pod_index = resources, job_index, pod_index
        self.written: dict[Key, kube.KubeObject] = {}
        self.specs: dict[Key, tuple[tuple[str, int], DatabaseMigrationSpec]] = {}

    def keys(self) -> Iterator[Key]:
        for namespace, name in list(self.resources):
            yield str(namespace), str(name)

    def current(self, key: Key) -> kube.KubeObject | None:
        seen = next(iter(self.resources.get(key, [])), None)
        ours = self.written.get(key)
        if seen is None:
            self.forget(key)
            return None
        if ours is not None and resource_version(ours) > resource_version(seen):
            return ours
        self.written.pop(key, None)  # the watch has caught up with our write
        return seen.copy()

    def owner(self, namespace: str, label: str) -> Key | None:
        """The resource a child's label names (a long name's label value is hashed)."""
        if (namespace, label) in self.resources:
            return namespace, label
        for key_namespace, name in self.keys():
            if key_namespace == namespace and jobs.label_value(name) == label:
                return key_namespace, name
        return None

    def jobs(self, namespace: str, name: str) -> dict[str, JobView]:
        return actions.job_views(namespace, name, self.job_index, self.pod_index)

    def spec(self, key: Key, body: kube.KubeObject) -> DatabaseMigrationSpec:
        """The body's spec, parsed once per generation: the API server bumps the generation
        with every change of the spec, and most passes follow a change of status or of a
        child."""
        meta = body["metadata"]
        stamp = (str(meta["uid"]), int(meta.get("generation", 1)))
        cached = self.specs.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, parse_spec(body.get("spec") or {}))
            self.specs[key] = cached
        return cached[1]

    def forget(self, key: Key) -> None:
        self.written.pop(key, None)
        self.specs.pop(key, None)


async def reconcile(caches: Caches, settings: jobs.JobSettings, key: Key) -> float | None:
    """One pass: observe (on the loop), decide (pure), act (in a worker thread)."""
    body = caches.current(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    namespace, name = key
    try:
        spec = caches.spec(key, body)
    except SpecError as error:  # the installed CRD is older than this operator
        log.error("%s/%s: %s", namespace, name, error)
        return None
    world = World(
        name=name,
        namespace=namespace,
        generation=int(body["metadata"].get("generation", 1)),
        spec=spec,
        status=body.get("status") or {},
        jobs=caches.jobs(namespace, name),
        now=datetime.now(UTC),
        uid=str(body["metadata"]["uid"]),
    )
    decision = decide(world)
    if actions.quiet(world, decision):
        # Nothing to send to the API server (a pass after our own write, or after a child
        # changed in a way that changes nothing): its metrics are set here, without a hop to
        # a worker thread, which costs more than the pass itself.
        carried = actions.observe_only(world, decision)
    else:
        carried = await asyncio.to_thread(actions.carry_out, body, world, decision, settings)
    if carried.written is not None:
        caches.written[key] = carried.written
    return carried.requeue_after


def snapshot(body: kopf.Body, kind: str = KIND) -> kube.KubeObject:
    """What a pass needs of a resource, as plain data (owner references need apiVersion and
    kind; a set needs its members' labels, annotations and owners)."""
    meta = body.metadata
    # kopf allows for no namespace (cluster-scoped kinds) and no resourceVersion (bodies made
    # in tests); a watched resource of ours always has both.
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {
            "name": meta.name,
            "namespace": cast(str, meta.namespace),
            "uid": meta.uid,
            "generation": meta.get("generation", 1),
            "resourceVersion": cast(str, meta.get("resourceVersion")),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "labels": dict(meta.labels or {}),
            "annotations": dict(meta.annotations or {}),
            "ownerReferences": plain(meta.get("ownerReferences") or []),
        },
        "spec": plain(body.spec),
        "status": plain(body.status),
    }


def resource_version(body: kube.KubeObject) -> int:
    """A resourceVersion as a number: the API server's etcd revisions only grow."""
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


def _owner_uid(meta: kopf.Meta) -> str:
    """Jobs made before the owner-uid label: their owner reference (none once orphaned)."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == KIND:
            return str(reference.get("uid", ""))
    return ""
