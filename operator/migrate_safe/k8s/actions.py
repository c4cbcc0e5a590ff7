"""One reconcile pass of one resource, outside kopf: what it observes (Jobs, their pods'
results) and carrying out what the pure state machine decided (Kubernetes calls: Jobs,
status, Events, metrics). Blocking calls of the synchronous `kubernetes` client; the
controller runs them in a worker thread.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from migrate_safe.k8s import conditions as c
from migrate_safe.k8s import jobs, kube, metrics
from migrate_safe.k8s.reconcile import Decision, Event, JobView, Rejection, World, decide
from migrate_safe.k8s.spec import DatabaseMigrationSpec
from migrate_safe.results import PhaseResult

GROUP, VERSION, PLURAL = jobs.GROUP, "v1alpha1", "databasemigrations"
API = f"{GROUP}/{VERSION}"
KIND = "DatabaseMigration"
COMPONENT = "migrate-safe-operator"

log = logging.getLogger("migrate_safe.operator")


# --- what a pass observes -----------------------------------------------------------------------


def plain(value: Any) -> Any:
    """kopf's views → plain dicts and lists (the state machine deep-copies them)."""
    return json.loads(json.dumps(value, default=dict)) if value is not None else {}


def pod_outcome(status: dict[str, Any]) -> dict[str, Any]:
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


def job_views(
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
        failure_reason=(true.get("Failed") or {}).get("reason", "") or "",
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
    missing = []
    for name in names:
        try:
            kube.get(kube.CORE, namespace, "configmaps", name)
        except ApiException as error:
            if error.status != 404:
                raise
            missing.append(name)
    return missing


# --- carrying out the decision --------------------------------------------------------------------


def _create_job(
    body: kube.KubeObject, world: World, decision: Decision, settings: jobs.JobSettings
) -> None:
    """Create the phase's Job (and the inline source's ConfigMap); AlreadyExists means a
    previous pass or a previous operator already did: the deterministic name, unique to this
    incarnation of the resource, adopts it."""
    launch = decision.launch
    assert launch is not None
    if world.spec.source.inline is not None and launch.phase == "preflight" and launch.attempt == 1:
        # Once per generation: every generation starts with its first preflight.
        configmap = jobs.inline_configmap(
            world.name, world.uid, world.namespace, world.generation, world.spec
        )
        kopf.append_owner_reference(configmap, owner=cast(Any, body))
        _create(lambda: kube.create(kube.CORE, world.namespace, "configmaps", configmap))
    job = jobs.build_job(
        name=world.name,
        uid=world.uid,
        namespace=world.namespace,
        generation=world.generation,
        launch=launch,
        spec=world.spec,
        settings=settings,
    )
    kopf.append_owner_reference(job, owner=cast(Any, body))
    _create(lambda: kube.create(kube.BATCH, world.namespace, "jobs", job))
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
    for name in names:
        try:
            kube.delete(kube.BATCH, namespace, "jobs", name, propagation="Background")
        except ApiException as error:
            if error.status != 404:
                raise
        log.info("%s: deleted Job %s of an earlier resource of the same name", namespace, name)


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


# --- one pass, carried out -------------------------------------------------------------------


@dataclass(frozen=True)
class Carried:
    """What a pass left: the resource as the API server returned it after our status write
    (None when nothing was written), and when the next pass is due."""

    written: kube.KubeObject | None
    requeue_after: float | None


def carry_out(
    body: kube.KubeObject, world: World, decision: Decision, settings: jobs.JobSettings
) -> Carried:
    """Jobs first, then status guarded by the body's resourceVersion, then Events and metrics:
    a Job created by a pass whose status write lost a race is adopted by the next pass, and
    Events and metrics are counted only once their transition is recorded."""
    _delete_jobs(world.namespace, decision.delete_jobs)
    if decision.launch is not None:
        decision = _launch(body, world, decision, settings)
    written = None
    patch = merge_patch(world.status, decision.status)
    if patch:
        written = _patch_status_unless_changed(body, world, patch)
        if written is None:
            # Someone changed the spec or the status since we read it: decide again on what
            # is there now, soon.
            log.info("%s/%s: status write raced a change; deciding again", *_key(world))
            return Carried(None, CONFLICT_RETRY)
    for event in decision.events:
        post_event(body, event)
        if event.kind == "Warning":  # every stall and failure, with the resource, in the log
            log.warning("%s/%s: %s: %s", world.namespace, world.name, event.reason, event.message)
    return replace(observe_only(world, decision), written=written)


def observe_only(world: World, decision: Decision) -> Carried:
    """A quiet decision (see `quiet`) carried out: its metrics, and when the next pass is due."""
    _observe(world.namespace, world.name, world, decision)
    return Carried(None, decision.requeue_after)


CONFLICT_RETRY = 0.2


def quiet(world: World, decision: Decision) -> bool:
    """Whether carrying the decision out leaves the API server alone (metrics only)."""
    return not (
        decision.delete_jobs
        or decision.launch is not None
        or decision.events
        or merge_patch(world.status, decision.status)
    )


def _key(world: World) -> tuple[str, str]:
    return world.namespace, world.name


def _launch(
    body: kube.KubeObject, world: World, decision: Decision, settings: jobs.JobSettings
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


def _patch_status_unless_changed(
    body: kube.KubeObject, world: World, patch: dict[str, Any]
) -> kube.KubeObject | None:
    """Write the status patch; None when the resource changed in a way the decision did not
    see. A change of metadata only (kopf adding its finalizer or annotations to a new
    resource, right as the first pass writes) leaves the decision valid: it is written again
    on the fresh resourceVersion, so the next pass does not launch the same Job twice."""
    for _ in range(METADATA_RACE_RETRIES):
        try:
            return _patch_status(body, patch)
        except ApiException as error:
            if error.status != 409:
                raise
        meta = body["metadata"]
        fresh = kube.get(API, meta["namespace"], PLURAL, meta["name"])
        if not decided_on(fresh, world):
            return None
        body = {
            **body,
            "metadata": {**meta, "resourceVersion": fresh["metadata"]["resourceVersion"]},
        }
    return None


METADATA_RACE_RETRIES = 3


def decided_on(current: kube.KubeObject, world: World) -> bool:
    """Whether `current` (the resource as it is now) has the generation and the status a pass
    decided on: only its metadata may have changed since."""
    return bool(
        current.get("metadata", {}).get("generation", 1) == world.generation
        and (current.get("status") or {}) == world.status
    )


def _patch_status(body: kube.KubeObject, patch: dict[str, Any]) -> kube.KubeObject:
    """Only what changed, as a JSON merge patch of /status, accepted only if the resource is
    still the version this pass read: a stale body never relaunches or skips a phase."""
    meta = body["metadata"]
    guarded = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
    return kube.patch(API, meta["namespace"], PLURAL, meta["name"], guarded, subresource="status")


def post_event(body: kube.KubeObject, event: Event, *, kind: str = KIND) -> None:
    meta = body["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {
        "metadata": {"generateName": f"{meta['name'][:200]}."},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.kind,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.create(kube.CORE, meta["namespace"], "events", record)
    except ApiException as error:  # an Event is a courtesy: never fail the pass over it
        where = f"{meta['namespace']}/{meta['name']}"
        log.warning("%s: cannot post Event %s: %s", where, event.reason, error.reason)
