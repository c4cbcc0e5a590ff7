"""The DatabaseMigrationSet state machine, pure: canary and waves in order, never more than
maxParallel members in progress, a failure budget that halts, new tenants at once, a lower
target in reverse waves, and members that leave the set."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from migrate_safe.k8s.fleet import (
    DatabaseSecret,
    Member,
    SetDecision,
    SetWorld,
    decide_set,
    parse_set_spec,
    waves,
)
from tests.unit.crd_defaults import defaulted_set

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def spec(**strategy: Any) -> dict[str, Any]:
    return defaulted_set(
        {
            "template": {
                "source": {"configMaps": [{"name": "migrations"}]},
                "rollback": {"policy": "Auto"},
            },
            "members": {"selector": {"matchLabels": {"fleet": "tenants"}}},
            "strategy": strategy,
        }
    )


@dataclass
class Fleet:
    raw: dict[str, Any]
    tenants: list[str]
    generation: int = 1
    status: dict[str, Any] = field(default_factory=lambda: {"observedGeneration": -1})
    members: dict[str, Member] = field(default_factory=dict)
    last: SetDecision | None = None
    updated: list[list[str]] = field(default_factory=list)  # the members given per pass
    now: datetime = T0
    created: dict[str, datetime] = field(default_factory=dict)  # Secrets made after the start

    def add_tenant(self, name: str) -> None:
        self.tenants.append(name)
        self.created[name] = self.now

    def step(self) -> SetDecision:
        self.now += timedelta(minutes=1)
        secrets = {
            name: DatabaseSecret(
                {"fleet": "tenants"}, self.created.get(name, T0 - timedelta(days=1))
            )
            for name in self.tenants
        }
        set_spec = parse_set_spec(self.raw)
        world = SetWorld(
            "fleet",
            "shop",
            "uid",
            self.generation,
            set_spec,
            self.status,
            secrets,
            self.members,
            self.now,
        )
        decision = decide_set(world)
        self.status = decision.status
        for change in decision.changes:
            old = self.members.get(change.member)
            generation = old.generation + 1 if old else 1
            self.members[change.member] = Member(
                change.name,
                change.member,
                change.revision,
                generation,
                observed_generation=generation - 1,
                ready=False,
                stalled=False,
                phase="Preflight",
            )
        for name in decision.orphan + decision.delete:
            member = next(m for m in self.members.values() if m.name == name)
            self.members.pop(member.member)
        self.updated.append([change.member for change in decision.changes])
        self.last = decision
        return decision

    def running(self) -> list[str]:
        return sorted(m.member for m in self.members.values() if not m.settled)

    def finish(self, member: str, *, fail: bool = False, version: int = 3) -> None:
        old = self.members[member]
        self.members[member] = replace(
            old,
            observed_generation=old.generation,
            ready=not fail,
            stalled=fail,
            reason="ApplyFailed" if fail else "Migrated",
            message='relation "x" already exists' if fail else "",
            phase="Failed" if fail else "Succeeded",
            current_version=version,
        )

    def finish_running(self, **kwargs: Any) -> list[str]:
        done = self.running()
        for member in done:
            self.finish(member, **kwargs)
        return done

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)


def tenants(count: int) -> list[str]:
    return [f"tenant-{i:02d}" for i in range(count)]


def test_waves_are_the_canary_then_slices_by_count_or_percentage() -> None:
    names = tenants(11)
    assert waves(names, 1, 5) == [names[:1], names[1:6], names[6:11]]
    assert waves(names, 2, "25%") == [names[:2], names[2:5], names[5:8], names[8:11]]
    assert waves(names, 0, 100) == [names]


def test_a_rollout_goes_canary_then_waves_never_more_than_max_parallel() -> None:
    fleet = Fleet(spec(canary=1, waveSize=5, maxParallel=3), tenants(11))
    order: list[list[str]] = []
    for _ in range(30):
        fleet.step()
        assert len(fleet.running()) <= 3
        done = fleet.finish_running()
        if done:
            order.append(done)
        if fleet.status["phase"] == "Succeeded":
            break
    names = tenants(11)
    flat = [m for batch in order for m in batch]
    assert order[0] == names[:1]  # the canary alone
    assert sorted(flat) == names and len(flat) == 11
    assert max(flat.index(m) for m in names[1:6]) < min(flat.index(m) for m in names[6:])
    assert fleet.status["summary"] == "11/11"
    assert fleet.condition("Ready")["status"] == "True"
    assert fleet.status["census"]["byVersion"] == {"3": 11}


def test_more_failures_than_the_budget_halt_until_the_spec_changes() -> None:
    fleet = Fleet(spec(canary=1, waveSize=2, maxParallel=2, maxFailures=0), tenants(5))
    fleet.step()
    fleet.finish_running()  # the canary
    fleet.step()
    first, second = fleet.running()
    fleet.finish(first, fail=True)
    fleet.finish(second)
    decision = fleet.step()
    assert decision.changes == []  # the later waves are untouched
    assert fleet.status["phase"] == "Halted"
    stalled = fleet.condition("Stalled")
    assert stalled["status"] == "True" and first in stalled["message"]
    assert 'relation "x" already exists' in stalled["message"]
    assert fleet.status["failed"][0]["member"] == first
    assert fleet.step().changes == []  # stays halted
    fleet.raw["template"]["targetVersion"] = 3  # the fix, in a new spec
    fleet.generation = 2
    resumed = fleet.step()
    assert resumed.changes and fleet.status["phase"] == "Progressing"


def test_a_new_tenant_joins_a_started_wave_at_once() -> None:
    fleet = Fleet(spec(canary=1, waveSize=10, maxParallel=1), tenants(3))
    fleet.step()
    fleet.finish_running()
    fleet.step()  # wave 1 started: one member in progress (maxParallel 1)
    fleet.add_tenant("tenant-01b")  # sorts into wave 1
    decision = fleet.step()
    assert "tenant-01b" in [c.member for c in decision.changes]


def test_members_waiting_in_a_started_wave_still_wait_for_a_place() -> None:
    fleet = Fleet(spec(canary=0, waveSize=10, maxParallel=2), tenants(6))
    for _ in range(6):
        fleet.step()
        assert len(fleet.running()) <= 2  # the others existed before the rollout: they queue
        fleet.finish_running()
    assert fleet.status["phase"] == "Succeeded"


def test_lowering_the_target_from_the_newest_version_is_a_rollback() -> None:
    fleet = Fleet(spec(canary=1, waveSize=2, maxParallel=5), tenants(3))
    for _ in range(5):
        fleet.step()
        fleet.finish_running(version=8)  # no targetVersion: the newest, 8
    fleet.raw["template"]["targetVersion"] = 5
    fleet.generation = 2
    fleet.step()
    assert fleet.status["direction"] == "backward"
    assert fleet.running() == ["tenant-01", "tenant-02"]  # the last wave first, not the canary


def test_a_lower_target_rolls_back_in_reverse_order_of_waves() -> None:
    fleet = Fleet(spec(canary=1, waveSize=2, maxParallel=5), tenants(5))
    fleet.raw["template"]["targetVersion"] = 8
    for _ in range(10):
        fleet.step()
        fleet.finish_running(version=8)
    assert fleet.status["phase"] == "Succeeded"
    fleet.raw["template"]["targetVersion"] = 5
    fleet.generation = 2
    given: list[list[str]] = []
    for _ in range(10):
        decision = fleet.step()
        if decision.changes:
            given.append([c.member for c in decision.changes])
        fleet.finish_running(version=5)
    assert fleet.status["direction"] == "backward"
    names = tenants(5)
    assert given == [names[3:5], names[1:3], names[:1]]  # last wave first, the canary last


def test_pausing_between_waves_waits_for_the_approved_wave() -> None:
    fleet = Fleet(spec(canary=1, waveSize=2, pauseBetweenWaves=True), tenants(5))
    fleet.step()
    fleet.finish_running()
    assert fleet.step().changes == []
    assert fleet.status["phase"] == "AwaitingApproval"
    assert "spec.strategy.approvedWave: 1" in fleet.condition("Ready")["message"]
    fleet.raw["strategy"]["approvedWave"] = 1
    fleet.generation = 2
    assert [c.member for c in fleet.step().changes] == tenants(5)[1:3]


def test_a_member_that_leaves_the_set_is_orphaned_or_deleted_as_the_policy_says() -> None:
    fleet = Fleet(spec(canary=0, waveSize=10), tenants(3))
    fleet.step()
    fleet.finish_running()
    fleet.tenants.remove("tenant-01")
    orphaned = fleet.step()
    assert orphaned.orphan == ["fleet-tenant-01"] and orphaned.delete == []
    fleet.raw["memberPolicy"] = "Delete"
    fleet.tenants.remove("tenant-02")
    assert fleet.step().delete == ["fleet-tenant-02"]
