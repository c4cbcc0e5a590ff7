"""The DatabaseMigrationSet state machine, pure: (set spec, status, member Secrets, member
DatabaseMigrations) → the members to create, update, orphan or delete, the new status, Events.

A set owns one DatabaseMigration per member database, so everything a DatabaseMigration does
(preflight, backup, apply, postflight, rollback, plan and approval) works per member unchanged;
the set only decides *when* each member gets the set's template. A rollout is a revision of the
template: the canary members first, then waves, at most `maxParallel` members in progress at
once; more failed members than `maxFailures` halt it until the spec changes. A lower
targetVersion rolls back in reverse order of the waves. A member that appears while its wave
is already under way (a new tenant) is brought to the current revision at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrate_safe.k8s import conditions as c
from migrate_safe.k8s.reconcile import Event

FAILED_LIMIT = 20  # members listed by name in status.failed; the counts are never cut


@dataclass(frozen=True)
class Expression:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        inside = labels.get(self.key) in self.values
        return inside if self.operator == "In" else not inside


@dataclass(frozen=True)
class Selector:
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Expression, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )


@dataclass(frozen=True)
class SetSpec:
    template: Mapping[str, Any]  # a DatabaseMigration spec without `database`
    selector: Selector | None
    secrets: tuple[str, ...]
    key: str
    ledger_schema: str
    canary: int
    wave_size: int | str  # a count, or a percentage like "25%"
    max_parallel: int
    max_failures: int
    pause_between_waves: bool
    approved_wave: int | None
    member_policy: str  # Orphan | Delete

    @property
    def revision(self) -> str:
        """Identifies the template: a new revision is a new rollout."""
        canonical = json.dumps(self.template, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def target_version(self) -> int | None:
        target = self.template.get("targetVersion")
        return int(target) if target is not None else None

    def child_spec(self, member: str) -> dict[str, Any]:
        spec = copy.deepcopy(dict(self.template))
        spec["database"] = {
            "secretRef": {"name": member, "key": self.key},
            "ledgerSchema": self.ledger_schema,
        }
        return spec


def parse_set_spec(spec: Mapping[str, Any]) -> SetSpec:
    """The set's spec as the API server defaulted it (the CRD is the only source of defaults)."""
    members, strategy = spec["members"], spec["strategy"]
    raw = members.get("selector")
    selector = None
    if raw is not None:
        expressions = tuple(
            Expression(e["key"], e["operator"], tuple(e.get("values") or ()))
            for e in raw.get("matchExpressions") or ()
        )
        selector = Selector(dict(raw.get("matchLabels") or {}), expressions)
    return SetSpec(
        template=spec["template"],
        selector=selector,
        secrets=tuple(s["name"] for s in members.get("secrets") or ()),
        key=members["key"],
        ledger_schema=members["ledgerSchema"],
        canary=strategy["canary"],
        wave_size=strategy["waveSize"],
        max_parallel=strategy["maxParallel"],
        max_failures=strategy["maxFailures"],
        pause_between_waves=strategy["pauseBetweenWaves"],
        approved_wave=strategy.get("approvedWave"),
        member_policy=spec["memberPolicy"],
    )


@dataclass(frozen=True)
class Member:
    """A member's DatabaseMigration as the set sees it."""

    name: str  # the DatabaseMigration's
    member: str  # the Secret's
    revision: str  # of the set's template it was given
    generation: int
    observed_generation: int
    ready: bool
    stalled: bool
    reason: str = ""
    message: str = ""
    phase: str | None = None
    current_version: int | None = None
    owned: bool = True  # owned by this set (not a member orphaned earlier)

    @property
    def settled(self) -> bool:
        """Its status describes its current spec."""
        return self.observed_generation == self.generation


@dataclass(frozen=True)
class DatabaseSecret:
    """A member database's Secret as the set sees it: labels and age, never its data."""

    labels: Mapping[str, str]
    created: datetime | None = None


@dataclass(frozen=True)
class SetWorld:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: SetSpec
    status: Mapping[str, Any]
    secrets: Mapping[str, DatabaseSecret]  # by Secret name
    members: Mapping[str, Member]  # by Secret name
    now: datetime


@dataclass(frozen=True)
class Change:
    """Give a member the set's template (create its DatabaseMigration, or update it)."""

    member: str
    name: str
    wave: int
    spec: dict[str, Any]
    revision: str
    create: bool


@dataclass
class SetDecision:
    status: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    orphan: list[str] = field(default_factory=list)  # DatabaseMigrations left as they are
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def child_name(set_name: str, member: str) -> str:
    """A member's DatabaseMigration: `<set>-<secret>`, cut and hashed to fit 253 characters."""
    name = f"{set_name}-{member}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:244]}-{digest}"


def waves(members: list[str], canary: int, wave_size: int | str) -> list[list[str]]:
    """Wave 0 is the canary (the first members by name), then waves of `wave_size` (a count,
    or a percentage of the members after the canary, at least one)."""
    ordered = sorted(members)
    first, rest = ordered[:canary], ordered[canary:]
    if isinstance(wave_size, str):
        size = max(1, math.ceil(len(rest) * int(wave_size.rstrip("%")) / 100))
    else:
        size = max(1, wave_size)
    chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    return ([first] if first else []) + chunks


class SetReconciler:
    def __init__(self, world: SetWorld) -> None:
        self.world = world
        self.spec = world.spec
        self.status: dict[str, Any] = copy.deepcopy(dict(world.status))
        self.decision = SetDecision(self.status)
        self.revision = self.spec.revision

    def decide(self) -> SetDecision:
        if self.status.get("observedGeneration") != self.world.generation:
            self._start_generation()
        selected = self._selected()
        plan = waves(selected, self.spec.canary, self.spec.wave_size)
        order = list(range(len(plan)))
        if self.status.get("direction") == "backward":
            order.reverse()  # a rollback undoes the last wave first and the canary last
        self._let_go(set(selected))
        halted = self.status.get("haltedGeneration") == self.world.generation
        failed = [m for m in self._current() if m.settled and m.stalled]
        if not halted and len(failed) > self.spec.max_failures:
            halted = True
            self.status["haltedGeneration"] = self.world.generation
            self._event("Warning", "Halted", self._halt_message(failed))
        reached = self._roll(plan, order, halted)
        self._summarise(plan, order, reached, failed, halted, selected)
        return self.decision

    # --- the rollout ----------------------------------------------------------------------

    def _start_generation(self) -> None:
        target = self.spec.target_version
        backward = target is not None and any(
            m.owned and m.current_version is not None and m.current_version > target
            for m in self.world.members.values()
        )
        self.status.update(
            observedGeneration=self.world.generation,
            revision=self.revision,
            targetVersion=target,
            direction="backward" if backward else "forward",
            rolloutStartedAt=_timestamp(self.world.now),
        )
        self.status.pop("haltedGeneration", None)
        self._event(
            "Normal",
            "RolloutStarted",
            f"revision {self.revision} ({'rollback' if backward else 'rollout'} to "
            f"{target if target is not None else 'the newest version'})",
        )

    def _selected(self) -> list[str]:
        chosen = set(self.spec.secrets)
        if self.spec.selector is not None:
            chosen |= {
                n for n, s in self.world.secrets.items() if self.spec.selector.matches(s.labels)
            }
        return sorted(chosen)

    def _current(self) -> list[Member]:
        return [m for m in self.world.members.values() if m.owned and m.revision == self.revision]

    def _roll(self, plan: list[list[str]], order: list[int], halted: bool) -> int | None:
        """Give the template to the members of every wave reached so far, at most
        maxParallel in progress; returns the wave being rolled (None when all are done)."""
        members = self.world.members
        in_progress = sum(
            1
            for m in members.values()
            if m.owned
            and m.revision == self.revision
            and not (m.settled and (m.ready or m.stalled))
        )
        budget = self.spec.max_parallel - in_progress
        for position, index in enumerate(order):
            wave = plan[index]
            if self._awaits_approval(position) or halted:
                self._new_members_only(wave, index, halted)
                return index
            for member in wave:
                child = members.get(member)
                if child is not None and child.revision == self.revision:
                    continue
                if child is None and self._new(member) and self._started(wave):
                    self._give(member, index, create=True)  # a new tenant: at once
                elif budget > 0:
                    self._give(member, index, create=child is None)
                    budget -= 1
            if not self._complete(wave):
                return index
        return None

    def _awaits_approval(self, position: int) -> bool:
        approved = self.spec.approved_wave if self.spec.approved_wave is not None else 0
        return self.spec.pause_between_waves and position > approved

    def _new_members_only(self, wave: list[str], index: int, halted: bool) -> None:
        """While halted or awaiting approval, nothing is updated; a new member of a wave
        that already started still joins it."""
        if halted:
            return
        for member in wave:
            if member not in self.world.members and self._new(member) and self._started(wave):
                self._give(member, index, create=True)

    def _new(self, member: str) -> bool:
        """The member's Secret appeared after this rollout started: a new tenant, which joins
        at once rather than waiting for a place within maxParallel."""
        secret = self.world.secrets.get(member)
        started = self.status.get("rolloutStartedAt")
        if secret is None or secret.created is None or not started:
            return False
        return _timestamp(secret.created) > str(started)

    def _started(self, wave: list[str]) -> bool:
        return any(
            (m := self.world.members.get(member)) is not None and m.revision == self.revision
            for member in wave
        )

    def _complete(self, wave: list[str]) -> bool:
        """Every member of the wave has the revision and ended: Ready, or failed within the
        failure budget."""
        for member in wave:
            child = self.world.members.get(member)
            if child is None or child.revision != self.revision:
                return False
            if not (child.settled and (child.ready or child.stalled)):
                return False
        return True

    def _give(self, member: str, wave: int, *, create: bool) -> None:
        self.decision.changes.append(
            Change(
                member,
                child_name(self.world.name, member),
                wave,
                self.spec.child_spec(member),
                self.revision,
                create,
            )
        )

    def _let_go(self, selected: set[str]) -> None:
        """Members whose Secret left the set: their DatabaseMigration is orphaned (left as it
        is, no longer owned) or deleted, as spec.memberPolicy says."""
        for member, child in self.world.members.items():
            if member in selected or not child.owned:
                continue
            target = (
                self.decision.delete
                if self.spec.member_policy == "Delete"
                else self.decision.orphan
            )
            target.append(child.name)
            verb = "deleted" if self.spec.member_policy == "Delete" else "left as it is (orphaned)"
            self._event("Normal", "MemberRemoved", f"{member} left the set: {child.name} {verb}")

    # --- status -----------------------------------------------------------------------------

    def _summarise(
        self,
        plan: list[list[str]],
        order: list[int],
        reached: int | None,
        failed: list[Member],
        halted: bool,
        selected: list[str],
    ) -> None:
        members = [m for m in self.world.members.values() if m.owned and m.member in selected]
        current = [m for m in members if m.revision == self.revision]
        ready = [m for m in current if m.settled and m.ready]
        running = [m for m in current if not (m.settled and (m.ready or m.stalled))]
        position = order.index(reached) + 1 if reached is not None else len(plan)
        self.status["wave"] = {"current": position, "total": len(plan)}
        self.status["members"] = {
            "total": len(selected),
            "updated": len(current),
            "ready": len(ready),
            "running": len(running),
            "failed": len(failed),
            "waiting": len(selected) - len(current),
        }
        self.status["summary"] = f"{len(ready)}/{len(selected)}"
        self.status["census"] = {
            "byPhase": dict(Counter(m.phase or "Pending" for m in members)),
            "byVersion": dict(Counter(str(m.current_version or "none") for m in members)),
        }
        self.status["failed"] = [
            {"member": m.member, "resource": m.name, "reason": m.reason, "message": m.message[:300]}
            for m in sorted(failed, key=lambda m: m.member)[:FAILED_LIMIT]
        ]
        previous_wave = self.world.status.get("wave", {}).get("current")
        if halted:
            self._set("Halted", c.FALSE, "Halted", self._halt_message(failed), stalled=True)
        elif len(ready) == len(selected) and selected:
            self._set("Succeeded", c.TRUE, "RolledOut", f"all {len(selected)} members ready")
        elif reached is not None and self._awaits_approval(order.index(reached)):
            message = (
                f"wave {position} of {len(plan)} awaits approval: set "
                f"spec.strategy.approvedWave: {position - 1}"
            )
            self._set("AwaitingApproval", c.FALSE, "AwaitingApproval", message)
        else:
            message = f"wave {position} of {len(plan)}: {len(ready)}/{len(selected)} ready"
            self._set("Progressing" if selected else "Pending", c.FALSE, "Progressing", message)
            if previous_wave != position and reached is not None:
                first = ", ".join(plan[reached][:10])
                self._event("Normal", "WaveStarted", f"wave {position} of {len(plan)}: {first}")

    def _halt_message(self, failed: list[Member]) -> str:
        names = "; ".join(f"{m.member}: {m.reason}: {m.message[:200]}" for m in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return (
            f"halted: {len(failed)} member(s) failed, more than spec.strategy.maxFailures "
            f"({self.spec.max_failures}): {names}{more}; fix them and change the spec to resume"
        )

    def _set(
        self, phase: str, ready: str, reason: str, message: str, *, stalled: bool = False
    ) -> None:
        newly = self.status.get("phase") != phase
        self.status["phase"] = phase
        conditions = self.status.setdefault("conditions", [])
        generation, now = self.world.generation, _timestamp(self.world.now)
        for kind, status, why in (
            (c.READY, ready, message),
            (c.RECONCILING, c.FALSE if stalled or ready == c.TRUE else c.TRUE, message),
            (c.STALLED, c.TRUE if stalled else c.FALSE, message if stalled else ""),
        ):
            conditions = c.set_condition(
                conditions, kind, status, reason, why, generation=generation, now=now
            )
        self.status["conditions"] = conditions
        if newly and phase == "Succeeded":
            self._event("Normal", "RolledOut", message)

    def _event(self, kind: str, reason: str, message: str) -> None:
        self.decision.events.append(Event(kind, reason, message[:1024]))


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes it: such strings sort as times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def decide_set(world: SetWorld) -> SetDecision:
    return SetReconciler(world).decide()
