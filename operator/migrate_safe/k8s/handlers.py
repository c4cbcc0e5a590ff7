"""kopf registrations, in one place so the whole event surface reads at a glance. Handlers
are thin: they gather what the operator observes, call the pure state machine, and carry out
its decision (create a Job, patch status, post events, update metrics). Handlers are sync:
the `kubernetes` client is synchronous and kopf runs sync handlers in its thread pool.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from migrate_safe.k8s import conditions as c
from migrate_safe.k8s import jobs, metrics
from migrate_safe.k8s.reconcile import (
    MUTATING,
    Decision,
    JobView,
    Rejection,
    World,
    decide,
)
from migrate_safe.k8s.spec import DatabaseMigrationSpec, SpecError, parse_spec
from migrate_safe.results import PhaseResult

GROUP, VERSION, PLURAL = jobs.GROUP, "v1alpha1", "databasemigrations"
KIND = "DatabaseMigration"
FORCE_DELETE = f"{GROUP}/force-delete"

log = logging.getLogger("migrate_safe.operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Own every name kopf writes (changing them later would re-run handlers)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-spec"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING  # our own Events tell the story, not log lines
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 5
    settings.execution.max_workers = 16
    # Never decide on a body older than our own last status patch, even when the watch lags
    # on a busy cluster: a stale status would relaunch or skip phases.
    settings.persistence.consistency_timeout = 60
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    memo["job_settings"] = jobs.JobSettings(
        image=os.environ.get("MIGRATE_SAFE_JOB_IMAGE", jobs.JobSettings.image),
        command=tuple(shlex.split(os.environ.get("MIGRATE_SAFE_JOB_COMMAND", "migrate-safe"))),
    )


@kopf.index("batch", "v1", "jobs", labels=jobs.MANAGED_LABELS)
def job_index(
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
            "status": _plain(status),
        }
    }


def _owner_uid(meta: kopf.Meta) -> str:
    """Jobs made before the owner-uid label: their owner reference (none once orphaned)."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == KIND:
            return str(reference.get("uid", ""))
    return ""


@kopf.index("", "v1", "pods", labels=jobs.MANAGED_LABELS)
def pod_index(
    namespace: str | None, labels: Mapping[str, str], status: kopf.Status, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Each Job pod's termination message (the harness's result) or why it cannot start."""
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""
    return {(namespace, job): _pod_outcome(_plain(status))}


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0, initial_delay=2.0)
def reconcile_resource(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """Level-triggered: every change and every tick computes the whole state again."""
    if body.metadata.get("deletionTimestamp"):
        return  # the deletion handler decides what happens now
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    try:
        spec = parse_spec(_plain(body.spec))
    except SpecError as error:  # the installed CRD is older than this operator
        raise kopf.PermanentError(f"{namespace}/{name}: {error}") from error
    world = World(
        name=name,
        namespace=namespace,
        generation=int(body.metadata.get("generation", 1)),
        spec=spec,
        status=_plain(body.status),
        jobs=_job_views(namespace, name, kwargs["job_index"], kwargs["pod_index"]),
        now=datetime.now(UTC),
        uid=str(body.metadata.uid),
    )
    decision = decide(world)
    try:
        _delete_jobs(namespace, decision.delete_jobs)
        if decision.launch is not None:
            decision = _launch(body, world, decision, memo["job_settings"])
    except ApiException as error:
        metrics.METRICS.inc(metrics.RECONCILE_ERRORS, namespace, name)
        log.warning("%s/%s: Kubernetes API: %s %s", namespace, name, error.status, error.reason)
        raise kopf.TemporaryError(
            f"Kubernetes API: {error.status} {error.reason}", delay=5
        ) from error
    _write_status(patch, world.status, decision.status)
    for event in decision.events:
        kopf.event(body, type=event.kind, reason=event.reason, message=event.message)
        if event.kind == "Warning":  # every stall and failure, with the resource, in the log
            log.warning("%s/%s: %s: %s", namespace, name, event.reason, event.message)
    _observe(namespace, name, world, decision)


def _launch(
    body: kopf.Body, world: World, decision: Decision, settings: jobs.JobSettings
) -> Decision:
    """Create the Job the decision asks for; a missing source or a Job the API server refuses
    becomes the decision's own outcome (a condition, an Event), never a silent retry loop."""
    missing = _missing_configmaps(world.namespace, world.spec)
    if missing:
        return decide(replace(world, missing_sources=tuple(missing)))
    try:
        _create_job(body, world, decision, settings)
    except ApiException as error:
        if error.status is None or not 400 <= error.status < 500 or error.status == 429:
            raise  # the API server is unwell: retry the pass
        launch = decision.launch
        assert launch is not None
        message = (
            f"the API server refused {launch.phase} Job {launch.job_name}: {error.status} "
            f"{error.reason}: {_api_message(error)}"
        )
        return decide(replace(world, rejected=Rejection(launch.phase, launch.job_name, message)))
    return decision


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", "")) or str(error.reason)
    except ValueError:
        return str(error.reason)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def hold_deletion(body: kopf.Body, **kwargs: Any) -> None:
    """The finalizer holds a deletion while a Job of ours changes the database: a GitOps prune
    during an apply must not kill it midway (a dirty ledger, a half-built index). Annotate
    `migrate-safe.dev/force-delete: "true"` to delete at once (the Job is then stopped)."""
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    uid = str(body.metadata.uid)
    views = _job_views(namespace, name, kwargs["job_index"], kwargs["pod_index"])
    busy = [
        job
        for job in views.values()
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


# --- what the handler observes ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """kopf's views → plain dicts and lists (the state machine deep-copies them)."""
    return json.loads(json.dumps(value, default=dict)) if value is not None else {}


def _pod_outcome(status: dict[str, Any]) -> dict[str, Any]:
    containers = [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]
    outcome: dict[str, Any] = {"terminated": False, "message": None, "waiting": None}
    for container in containers:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in (
            "CreateContainerConfigError",
            "ErrImagePull",
            "ImagePullBackOff",
        ):
            outcome["waiting"] = waiting.get("message") or waiting.get("reason")
        terminated = state.get("terminated")
        if terminated:
            outcome["terminated"] = True
            if terminated.get("message"):
                outcome["message"] = terminated["message"]
    return outcome


def _job_views(
    namespace: str, name: str, job_index: kopf.Index[Any, Any], pod_index: kopf.Index[Any, Any]
) -> dict[str, JobView]:
    views = {}
    for entry in job_index.get((namespace, jobs.label_value(name)), []):
        pods = list(pod_index.get((namespace, entry["name"]), []))
        views[entry["name"]] = _job_view(entry, pods)
    return views


def _job_view(entry: dict[str, Any], pods: list[dict[str, Any]]) -> JobView:
    status = entry["status"] or {}
    true = {
        cond["type"]: cond
        for cond in status.get("conditions") or []
        if cond.get("status") == "True"
    }
    state = "succeeded" if "Complete" in true else "failed" if "Failed" in true else "running"
    finished_at = status.get("completionTime") or (true.get("Failed") or {}).get(
        "lastTransitionTime"
    )
    result = _result(pods)
    waiting = next((p["waiting"] for p in pods if p.get("waiting")), None)
    return JobView(
        name=entry["name"],
        phase=entry["phase"],
        generation=entry["generation"],
        attempt=entry["attempt"],
        state=state,
        result=result,
        message=(true.get("Failed") or {}).get("message", "") or "",
        waiting=waiting if state == "running" else None,
        started_at=status.get("startTime"),
        finished_at=finished_at,
        owner_uid=entry.get("owner_uid", ""),
    )


def _result(pods: list[dict[str, Any]]) -> PhaseResult | None:
    for pod in pods:
        try:
            return PhaseResult.from_json(json.loads(pod.get("message") or ""))
        except ValueError:
            continue  # not JSON (a crash's log tail), or not a result
    return None


def _missing_configmaps(namespace: str, spec: DatabaseMigrationSpec) -> list[str]:
    names = [cm.name for cm in spec.source.config_maps]
    api = kubernetes.client.CoreV1Api()
    missing = []
    for name in names:
        try:
            api.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            missing.append(name)
    return missing


# --- carrying out the decision --------------------------------------------------------------------


def _create_job(
    body: kopf.Body, world: World, decision: Decision, settings: jobs.JobSettings
) -> None:
    """Create the phase's Job (and the inline source's ConfigMap); AlreadyExists means a
    previous pass or a previous operator already did: the deterministic name, unique to this
    incarnation of the resource, adopts it."""
    launch = decision.launch
    assert launch is not None
    if world.spec.source.inline is not None:
        configmap = jobs.inline_configmap(
            world.name, world.uid, world.namespace, world.generation, world.spec
        )
        kopf.append_owner_reference(configmap, owner=body)
        _create(
            lambda: kubernetes.client.CoreV1Api().create_namespaced_config_map(
                world.namespace, cast(Any, configmap)
            )
        )
    job = jobs.build_job(
        name=world.name,
        uid=world.uid,
        namespace=world.namespace,
        generation=world.generation,
        launch=launch,
        spec=world.spec,
        settings=settings,
    )
    kopf.append_owner_reference(job, owner=body)
    _create(
        lambda: kubernetes.client.BatchV1Api().create_namespaced_job(
            world.namespace, cast(Any, job)
        )
    )
    if launch.phase == "rollback":
        metrics.METRICS.inc(metrics.ROLLBACKS, world.namespace, world.name)
    log.info("%s/%s: created %s Job %s", world.namespace, world.name, launch.phase, launch.job_name)


def _create(call: Any) -> None:
    try:
        call()
    except ApiException as error:
        if error.status != 409:
            raise


def _delete_jobs(namespace: str, names: list[str]) -> None:
    """Jobs left by an earlier incarnation of the resource (deleted with --cascade=orphan, or
    not yet collected): never read, removed with their pods."""
    api = kubernetes.client.BatchV1Api()
    for name in names:
        try:
            api.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise
        log.info("%s: deleted Job %s of an earlier resource of the same name", namespace, name)


def _write_status(patch: kopf.Patch, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Only what changed, as a JSON merge patch of /status."""
    for key, value in merge_patch(before, after).items():
        patch.status[key] = value


def merge_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch from `before` to `after`: a key that disappears becomes None
    (a merge of `{}` would leave nested keys behind), lists are replaced whole."""
    patch: dict[str, Any] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if key not in after:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(new, dict):
            nested = merge_patch(old, new)
            if nested:
                patch[key] = nested
        elif old != new:
            patch[key] = new
    return patch


def _observe(namespace: str, name: str, world: World, decision: Decision) -> None:
    m = metrics.METRICS
    m.touch(namespace, name)
    status = decision.status
    for job in decision.finished:
        result = job.result
        m.inc(metrics.RUNS, namespace, name, job.phase, job.state)
        duration = _duration(job)
        if duration is not None:
            m.observe(metrics.PHASE_DURATION, namespace, name, job.phase, value=duration)
        if job.state == "failed":
            m.set(metrics.LAST_FAILURE, namespace, name, time.time())
        if result is None:
            continue
        m.inc(metrics.MIGRATIONS_APPLIED, namespace, name, by=len(result.applied))
        m.inc(metrics.MIGRATIONS_ROLLED_BACK, namespace, name, by=len(result.rolled_back))
        if result.backup is not None and result.succeeded:
            m.set(metrics.BACKUP_SIZE, namespace, name, result.backup.size_bytes)
            m.set(metrics.LAST_BACKUP, namespace, name, time.time())
    conditions = status.get("conditions", [])
    ready = c.is_true(conditions, c.READY)
    if ready and not c.is_true(world.status.get("conditions", []), c.READY):
        m.set(metrics.LAST_SUCCESS, namespace, name, time.time())
    m.set(metrics.READY, namespace, name, 1 if ready else 0)
    m.set(metrics.PENDING, namespace, name, status.get("pendingCount") or 0)
    m.set(metrics.CURRENT_VERSION, namespace, name, status.get("currentVersion") or 0)
    if not c.is_true(conditions, c.RECONCILING):
        m.set(metrics.IN_PROGRESS_SINCE, namespace, name, 0)
    elif m.get(metrics.IN_PROGRESS_SINCE, namespace, name) == 0:
        m.set(metrics.IN_PROGRESS_SINCE, namespace, name, time.time())


def _duration(job: JobView) -> float | None:
    if not job.started_at or not job.finished_at:
        return None
    return (_moment(job.finished_at) - _moment(job.started_at)).total_seconds()


def _moment(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
