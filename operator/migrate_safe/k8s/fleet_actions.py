"""One pass of a DatabaseMigrationSet, outside kopf: what it observes of its members and
carrying out what the set's state machine (fleet.py) decided: create, update, orphan or
delete members' DatabaseMigrations, then the set's status (guarded by its resourceVersion),
Events and metrics. Blocking calls of the synchronous `kubernetes` client, run in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from migrate_safe.k8s import conditions as c
from migrate_safe.k8s import jobs, kube, metrics
from migrate_safe.k8s.actions import (
    API,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    merge_patch,
    post_event,
)
from migrate_safe.k8s.fleet import Change, Member, SetDecision, SetWorld

SET_KIND, SET_PLURAL = "DatabaseMigrationSet", "databasemigrationsets"
LABEL_SET = f"{GROUP}/set"
LABEL_MEMBER = f"{GROUP}/member"
LABEL_WAVE = f"{GROUP}/wave"
REVISION = f"{GROUP}/set-revision"
MEMBER_SECRET = f"{GROUP}/member-secret"  # the Secret's name in full (a label may be hashed)
# Member Secrets carry this label (any value): only they are watched, never other Secrets.
LABEL_DATABASE = f"{GROUP}/database"

log = logging.getLogger("migrate_safe.operator")


def member_view(snapshot: kube.KubeObject, set_uid: str) -> Member:
    """A member's DatabaseMigration, from the operator's cache of it."""
    meta, status = snapshot["metadata"], snapshot.get("status") or {}
    conditions = status.get("conditions") or []
    ready, stalled = c.condition(conditions, c.READY), c.condition(conditions, c.STALLED)
    reason_of = stalled if c.is_true(conditions, c.STALLED) else ready
    owners = meta.get("ownerReferences") or []
    return Member(
        name=meta["name"],
        member=(meta.get("annotations") or {}).get(MEMBER_SECRET, ""),
        revision=(meta.get("annotations") or {}).get(REVISION, ""),
        generation=int(meta.get("generation", 1)),
        observed_generation=int(status.get("observedGeneration", -1)),
        ready=c.is_true(conditions, c.READY),
        stalled=c.is_true(conditions, c.STALLED),
        reason=str((reason_of or {}).get("reason", "")),
        message=str((reason_of or {}).get("message", "")),
        phase=status.get("phase"),
        current_version=status.get("currentVersion"),
        owned=any(o.get("uid") == set_uid for o in owners),
    )


def carry_out_set(
    body: kube.KubeObject, world: SetWorld, decision: SetDecision
) -> kube.KubeObject | None:
    """Members first (their own controller takes it from there), then the set's status."""
    for change in decision.changes:
        _give(body, world, change)
    for name in decision.orphan:
        _orphan(world.namespace, name)
    for name in decision.delete:
        _delete(world.namespace, name)
    written: kube.KubeObject | None = None
    patch = merge_patch(dict(world.status), decision.status)
    if patch:
        meta = body["metadata"]
        try:
            guarded = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
            written = kube.patch(
                API, world.namespace, SET_PLURAL, world.name, guarded, subresource="status"
            )
        except ApiException as error:
            if error.status != 409:
                raise
            return None  # the set changed meanwhile: the next pass decides on what is there
    for event in decision.events:
        post_event(body, event, kind=SET_KIND)
        if event.kind == "Warning":
            log.warning("%s/%s: %s: %s", world.namespace, world.name, event.reason, event.message)
    _observe(world.namespace, world.name, decision.status)
    return written


def _give(body: kube.KubeObject, world: SetWorld, change: Change) -> None:
    labels = {
        **jobs.MANAGED_LABELS,
        LABEL_SET: jobs.label_value(world.name),
        LABEL_MEMBER: jobs.label_value(change.member),
        LABEL_WAVE: str(change.wave),
    }
    if change.create:
        resource: kube.KubeObject = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {
                "name": change.name,
                "namespace": world.namespace,
                "labels": labels,
                "annotations": {REVISION: change.revision, MEMBER_SECRET: change.member},
                "ownerReferences": [_owner(body)],
            },
            "spec": change.spec,
        }
        try:
            kube.create(API, world.namespace, PLURAL, resource)
            return
        except ApiException as error:
            if error.status != 409:
                raise
    # The whole spec is replaced (a field the template no longer has must go too).
    replace_spec = [
        {"op": "replace", "path": "/spec", "value": change.spec},
        {
            "op": "add",
            "path": f"/metadata/annotations/{_pointer(REVISION)}",
            "value": change.revision,
        },
        *(
            {"op": "add", "path": f"/metadata/labels/{_pointer(key)}", "value": value}
            for key, value in labels.items()
        ),
    ]
    kube.patch(
        API, world.namespace, PLURAL, change.name, replace_spec, content_type=kube.JSON_PATCH
    )


def _pointer(key: str) -> str:
    """A label or annotation key as a JSON pointer segment ('/' is written '~1')."""
    return key.replace("~", "~0").replace("/", "~1")


def _orphan(namespace: str, name: str) -> None:
    """Left as it is: no longer owned by the set nor counted in it."""
    patch = {
        "metadata": {
            "ownerReferences": None,
            "labels": {LABEL_SET: None, LABEL_MEMBER: None, LABEL_WAVE: None},
        }
    }
    try:
        kube.patch(API, namespace, PLURAL, name, patch)
    except ApiException as error:
        if error.status != 404:
            raise


def _delete(namespace: str, name: str) -> None:
    try:
        kube.delete(API, namespace, PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise


def _owner(body: kube.KubeObject) -> kube.OwnerReference:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": SET_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _observe(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    m = metrics.METRICS
    members = status.get("members") or {}
    for state in ("total", "ready", "running", "failed", "waiting"):
        m.set_fleet_gauge(metrics.SET_MEMBERS, namespace, name, state, value=members.get(state, 0))
    wave = status.get("wave") or {}
    m.set_fleet_gauge(metrics.SET_WAVE, namespace, name, value=wave.get("current", 0))
    m.set_fleet_gauge(metrics.SET_WAVES, namespace, name, value=wave.get("total", 0))
    halted = 1 if status.get("phase") == "Halted" else 0
    m.set_fleet_gauge(metrics.SET_HALTED, namespace, name, value=halted)
