"""kopf registrations of DatabaseMigrationSets, loaded unless the operator runs --no-fleets (they
add a watch on database Secrets, which needs `list` and `watch` on Secrets).

Like handlers.py for DatabaseMigrations: the watches feed kopf's indexes, a change of a set, of
one of its members or of a database Secret queues the set, and one pass reads the indexes, asks
the pure state machine (fleet.py) what to do and carries it out (fleet_actions.py) in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import kopf

from migrate_safe.k8s import jobs, metrics
from migrate_safe.k8s.actions import GROUP, PLURAL, VERSION
from migrate_safe.k8s.controller import Controller, Key
from migrate_safe.k8s.fleet import (
    DatabaseSecret,
    Member,
    SetDecision,
    SetWorld,
    child_name,
    decide_set,
    parse_set_spec,
)
from migrate_safe.k8s.fleet_actions import (
    LABEL_DATABASE,
    LABEL_SET,
    SET_KIND,
    SET_PLURAL,
    carry_out_set,
    member_view,
)
from migrate_safe.k8s.handlers import resource_version, snapshot
from migrate_safe.k8s.kube import KubeObject

WORKERS = 2


@kopf.on.startup()
async def start_fleets(memo: kopf.Memo, **kwargs: Any) -> None:
    """Runs after handlers.configure (kopf runs startup handlers in the order they were
    registered); the leadership daemon activates this controller with the others."""
    fleets = Fleets(kwargs["set_index"], kwargs["member_index"], kwargs["secret_index"])
    controller = Controller(partial(reconcile_set, fleets), fleets.keys, WORKERS)
    controller.start()
    memo["fleets"], memo["set_controller"] = fleets, controller
    memo["controllers"].append(controller)


# --- what kopf keeps from the watches ----------------------------------------------------------


@kopf.index(GROUP, VERSION, SET_PLURAL)
async def set_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], KubeObject]:
    return {(namespace, name): snapshot(body, kind=SET_KIND)}


@kopf.index(GROUP, VERSION, PLURAL, labels={LABEL_SET: kopf.PRESENT})
async def member_index(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], KubeObject]:
    """Members' DatabaseMigrations by the set that owns them."""
    return {(namespace, labels[LABEL_SET]): snapshot(body)}


@kopf.index("", "v1", "secrets", labels={LABEL_DATABASE: kopf.PRESENT})
async def secret_index(
    namespace: str | None, name: str, labels: Mapping[str, str], meta: kopf.Meta, **_: Any
) -> dict[str | None, tuple[str, DatabaseSecret]]:
    """Database Secrets by namespace: their names, labels and age only, never their data."""
    created = meta.get("creationTimestamp")
    secret = DatabaseSecret(dict(labels), datetime.fromisoformat(created) if created else None)
    return {namespace: (name, secret)}


# --- what wakes a set ---------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, SET_PLURAL)
async def set_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo["set_controller"].enqueue((str(namespace), name))


@kopf.on.event(GROUP, VERSION, PLURAL, labels={LABEL_SET: kopf.PRESENT})
async def member_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A member progressed: its set decides whether the next one may start."""
    owner = memo["fleets"].owner(str(namespace), labels[LABEL_SET])
    if owner is not None:
        memo["set_controller"].enqueue(owner)


@kopf.on.event("", "v1", "secrets", labels={LABEL_DATABASE: kopf.PRESENT})
async def database_secret_changed(namespace: str | None, memo: Any, **_: Any) -> None:
    """A database appeared or its labels changed (a new tenant): every set of the namespace
    looks at its members again."""
    for key in memo["fleets"].in_namespace(str(namespace)):
        memo["set_controller"].enqueue(key)


@kopf.on.delete(GROUP, VERSION, SET_PLURAL, optional=True)
def forget_set(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    metrics.METRICS.forget(str(namespace), name, metrics.SET_KIND)
    memo["fleets"].forget((str(namespace), name))


# --- one pass ------------------------------------------------------------------------------------


class Fleets:
    """kopf's indexes of sets, their members and database Secrets, plus our own last writes."""

    def __init__(
        self,
        sets: kopf.Index[Any, KubeObject],
        members: kopf.Index[Any, KubeObject],
        secrets: kopf.Index[Any, Any],
    ) -> None:
        self.sets, self.members, self.secrets = sets, members, secrets
        self.written: dict[Key, KubeObject] = {}
        # What our own passes gave members and the watch has not shown yet (member → revision):
        # a pass counts those as in progress, or it would start more than maxParallel.
        self.given: dict[Key, dict[str, str]] = {}

    def keys(self) -> Iterator[Key]:
        for namespace, name in list(self.sets):
            yield str(namespace), str(name)

    def current(self, key: Key) -> KubeObject | None:
        seen = next(iter(self.sets.get(key, [])), None)
        ours = self.written.pop(key, None)
        if seen is None:
            return None
        if ours is not None and resource_version(ours) > resource_version(seen):
            self.written[key] = ours
            return ours
        return seen.copy()

    def in_namespace(self, namespace: str) -> list[Key]:
        return [key for key in self.keys() if key[0] == namespace]

    def owner(self, namespace: str, label: str) -> Key | None:
        for key in self.in_namespace(namespace):
            if jobs.label_value(key[1]) == label:
                return key
        return None

    def world(self, key: Key, body: KubeObject) -> SetWorld:
        namespace, name = key
        uid = str(body["metadata"]["uid"])
        members = {
            view.member: view
            for snapshot in self.members.get((namespace, jobs.label_value(name)), [])
            if (view := member_view(snapshot, uid)).member
        }
        expected = self.given.setdefault(key, {})
        for member, revision in list(expected.items()):
            seen = members.get(member)
            if seen is not None and seen.revision == revision:
                del expected[member]  # the watch has caught up
            else:
                members[member] = _just_given(name, member, revision, seen)
        return SetWorld(
            name=name,
            namespace=namespace,
            uid=uid,
            generation=int(body["metadata"].get("generation", 1)),
            spec=parse_set_spec(body["spec"]),
            status=body.get("status") or {},
            secrets=dict(self.secrets.get(namespace, [])),
            members=members,
            now=datetime.now(UTC),
        )

    def remember(self, key: Key, decision: SetDecision) -> None:
        for change in decision.changes:
            self.given.setdefault(key, {})[change.member] = change.revision

    def forget(self, key: Key) -> None:
        self.given.pop(key, None)
        self.written.pop(key, None)


def _just_given(set_name: str, member: str, revision: str, seen: Member | None) -> Member:
    """A member as our last pass left it: given `revision`, not yet started on it."""
    generation = seen.generation + 1 if seen is not None else 1
    return Member(
        child_name(set_name, member),
        member,
        revision,
        generation,
        observed_generation=-1,
        ready=False,
        stalled=False,
        phase=seen.phase if seen else None,
        current_version=seen.current_version if seen else None,
    )


async def reconcile_set(fleets: Fleets, key: Key) -> float | None:
    """One pass of a set: observe its members (on the loop), decide (pure), act (a thread).
    Nothing is timed: members' and Secrets' events wake it."""
    body = fleets.current(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    world = fleets.world(key, body)
    decision = decide_set(world)
    written = await asyncio.to_thread(carry_out_set, body, world, decision)
    fleets.remember(key, decision)
    if written is not None:
        fleets.written[key] = written
    return None
