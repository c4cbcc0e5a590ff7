"""When the operator writes a status patch again after a conflict: only when the resource
changed in its metadata alone (kopf's finalizer and annotations on a new resource), never
when its spec or status moved on (the pass then decides again)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from migrate_safe.k8s.actions import decided_on
from migrate_safe.k8s.reconcile import World
from migrate_safe.k8s.spec import parse_spec
from tests.unit.crd_defaults import defaulted

READ: dict[str, Any] = {
    "metadata": {"name": "orders", "generation": 1, "resourceVersion": "10"},
    "spec": {"database": {"secretRef": {"name": "db"}}, "source": {"configMaps": [{"name": "m"}]}},
    "status": {"observedGeneration": -1},
}


def world_of(body: dict[str, Any]) -> World:
    return World(
        "orders",
        "shop",
        body["metadata"]["generation"],
        parse_spec(defaulted(body["spec"])),
        body["status"],
        {},
        datetime(2026, 11, 29, tzinfo=UTC),
        uid="u",
    )


def test_a_finalizer_added_since_the_read_leaves_the_decision_valid() -> None:
    now = copy.deepcopy(READ)
    now["metadata"].update(
        resourceVersion="11",
        finalizers=["migrate-safe.dev/finalizer"],
        annotations={"migrate-safe.dev/last-handled-spec": "{}"},
    )
    assert decided_on(now, world_of(READ))


def test_a_new_generation_or_another_status_means_deciding_again() -> None:
    edited = copy.deepcopy(READ)
    edited["metadata"].update(resourceVersion="11", generation=2)
    assert not decided_on(edited, world_of(READ))
    written = copy.deepcopy(READ)
    written["metadata"]["resourceVersion"] = "11"
    written["status"] = {"observedGeneration": 1, "phase": "Preflight"}
    assert not decided_on(written, world_of(READ))
