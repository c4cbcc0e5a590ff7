"""The operator's state machine, pure: every phase × Job outcome × spec change, no cluster."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migrate_safe.k8s.reconcile import (
    FAILURE_REASON,
    Decision,
    JobView,
    World,
    decide,
    job_name,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PASSED = {"outcome": "succeeded", "exit_code": 0}


def preflight_result(**fields: Any) -> dict[str, Any]:
    base = {
        "current_version": 0,
        "latest_version": 3,
        "pending": [1, 2, 3],
        "missing_from_source": [],
    }
    return {**PASSED, **base, **fields}


@dataclass
class Sim:
    """Drives decide() the way the handlers do: keep status, create the launched Jobs."""

    spec: dict[str, Any] = field(
        default_factory=lambda: {
            "database": {"secretRef": {"name": "db"}},
            "source": {"configMaps": [{"name": "m"}]},
        }
    )
    generation: int = 1
    status: dict[str, Any] = field(default_factory=lambda: {"observedGeneration": -1})
    jobs: dict[str, JobView] = field(default_factory=dict)
    now: datetime = T0
    last: Decision | None = None

    def step(self, **world: Any) -> Decision:
        decision = decide(
            World(
                "orders",
                "shop",
                self.generation,
                self.spec,
                self.status,
                self.jobs,
                self.now,
                **world,
            )
        )
        self.status = decision.status
        if decision.launch:
            launch = decision.launch
            self.jobs[launch.job_name] = JobView(
                launch.job_name, launch.phase, self.generation, launch.attempt, "running"
            )
        self.last = decision
        return decision

    def finish(self, phase: str, result: dict[str, Any] | None, state: str = "succeeded") -> None:
        name = self.status["jobs"][phase]
        stamp = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.jobs[name] = replace(
            self.jobs[name], state=state, result=result, started_at=stamp, finished_at=stamp
        )

    def run(
        self, phase: str, result: dict[str, Any] | None = None, state: str = "succeeded"
    ) -> Decision:
        assert self.last and self.last.launch and self.last.launch.phase == phase, self.last
        self.finish(phase, PASSED if result is None else result, state)
        return self.step()

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)

    def launched(self) -> str | None:
        return self.last.launch.phase if self.last and self.last.launch else None


def migrated(sim: Sim, *, backup: bool = False) -> None:
    sim.step()
    sim.run("preflight", preflight_result())
    if backup:
        sim.run(
            "backup",
            {
                **PASSED,
                "backup": {
                    "path": "/b/x.dump",
                    "size_bytes": 10,
                    "sha256": "a" * 64,
                    "created_at": "t",
                },
            },
        )
    sim.run("apply", {**PASSED, "current_version": 3, "applied": [1, 2, 3]})
    sim.run("postflight", {**PASSED, "current_version": 3, "fingerprint": "f" * 64})


def test_first_visit_writes_observed_generation_and_conditions_and_starts_preflight() -> None:
    sim = Sim()
    decision = sim.step()
    assert sim.status["observedGeneration"] == 1
    assert (sim.condition("Ready")["status"], sim.condition("Reconciling")["status"]) == (
        "False",
        "True",
    )
    assert decision.launch and decision.launch.job_name == "orders-g1-preflight"
    assert decision.requeue_after


def test_happy_path_with_backup_runs_the_phases_in_order() -> None:
    sim = Sim()
    sim.spec["backup"] = {"enabled": True, "persistentVolumeClaim": "b"}
    migrated(sim, backup=True)
    assert sim.launched() is None
    assert (sim.condition("Ready")["status"], sim.condition("Ready")["reason"]) == (
        "True",
        "Migrated",
    )
    for kind in ("PreflightPassed", "BackedUp", "Applied", "PostflightPassed"):
        assert sim.condition(kind)["status"] == "True"
    assert sim.condition("Stalled")["status"] == "False"
    assert sim.status["currentVersion"] == 3 and sim.status["fingerprint"] == "f" * 64
    assert sim.status["lastBackup"]["sizeBytes"] == 10
    assert [h["phase"] for h in sim.status["history"]] == [
        "preflight",
        "backup",
        "apply",
        "postflight",
    ]
    again = sim.step()  # idle: nothing to do, nothing changes
    assert again.launch is None and again.events == [] and again.status == sim.status


def test_without_backup_and_postflight_it_goes_straight_to_ready() -> None:
    sim = Sim()
    sim.spec["postflight"] = {"enabled": False}
    sim.step()
    sim.run("preflight", preflight_result())
    sim.run("apply", {**PASSED, "current_version": 3})
    assert sim.condition("Ready")["status"] == "True"
    assert sim.condition("BackedUp")["reason"] == "BackupDisabled"


@pytest.mark.parametrize("phase", ["backup", "apply", "postflight"])
def test_a_failed_phase_stalls_the_generation_with_its_reason(phase: str) -> None:
    sim = Sim()
    sim.spec["backup"] = {"enabled": True, "persistentVolumeClaim": "b"}
    sim.step()
    sim.run("preflight", preflight_result())
    for earlier in ("backup", "apply", "postflight"):
        if earlier == phase:
            break
        sim.run(earlier, PASSED)
    error = {
        "message": 'relation "x" does not exist',
        "sqlstate": "42P01",
        "file": "2.up.sql",
        "line": 3,
    }
    decision = sim.run(phase, {"outcome": "failed", "exit_code": 2, "error": error}, "failed")
    assert decision.launch is None
    stalled = sim.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", FAILURE_REASON[phase])
    assert 'relation "x" does not exist (2.up.sql:3) [SQLSTATE 42P01]' in stalled["message"]
    assert sim.condition("Reconciling")["status"] == "False"  # kstatus reads Reconciling first
    assert sim.status["phase"] == "Failed"
    assert any(e.kind == "Warning" and e.reason == FAILURE_REASON[phase] for e in decision.events)
    assert sim.step().launch is None  # stays stalled until the spec changes


def test_a_job_that_died_without_a_result_is_a_failure_with_the_jobs_message() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    sim.finish("apply", None, "failed")
    name = sim.status["jobs"]["apply"]
    sim.jobs[name] = replace(
        sim.jobs[name], message="Job was active longer than specified deadline"
    )
    sim.step()
    assert "deadline" in sim.condition("Stalled")["message"]


def blocked_preflight() -> dict[str, Any]:
    problem = {
        "name": "LongTransactionOnTouchedTable",
        "status": "fail",
        "summary": "pid 7 (report) holds AccessShareLock on accounts",
    }
    return {
        **preflight_result(),
        "outcome": "failed",
        "exit_code": 1,
        "preflight_problems": [problem],
    }


def test_preflight_blocked_by_other_sessions_is_retried_after_the_interval() -> None:
    sim = Sim()
    sim.spec["preflight"] = {"retryInterval": "10s"}
    sim.step()
    decision = sim.run("preflight", blocked_preflight(), "failed")
    assert decision.launch is None and decision.requeue_after
    blocked = sim.condition("PreflightPassed")
    assert (blocked["status"], blocked["reason"]) == ("False", "PreflightBlocked")
    assert "report" in blocked["message"]
    assert sim.condition("Stalled")["status"] == "False"
    sim.now += timedelta(seconds=11)
    retry = sim.step()
    assert retry.launch and retry.launch.job_name == "orders-g1-preflight-2"
    sim.run("preflight", preflight_result())
    assert sim.launched() == "apply"


@pytest.mark.parametrize("check", ["LedgerDirty", "ChecksumDrift", "Lint", "SchemaDrift"])
def test_preflight_failures_a_retry_cannot_fix_stall(check: str) -> None:
    sim = Sim()
    sim.step()
    result = {
        **blocked_preflight(),
        "preflight_problems": [{"name": check, "status": "fail", "summary": "bad"}],
    }
    sim.run("preflight", result, "failed")
    assert (sim.condition("Stalled")["status"], sim.condition("Stalled")["reason"]) == (
        "True",
        "PreflightFailed",
    )


def test_plan_mode_publishes_the_plan_and_applies_only_an_approved_hash() -> None:
    sim = Sim()
    sim.spec["mode"] = "Plan"
    sim.step()
    sim.run("preflight", preflight_result())
    plan = {"hash": "h" * 64, "direction": "up", "migrations": [], "lint": {}}
    sim.run("plan", {**PASSED, "plan": plan})
    assert (sim.condition("Ready")["status"], sim.condition("Ready")["reason"]) == (
        "True",
        "Planned",
    )
    assert sim.status["plan"]["hash"] == "h" * 64 and sim.launched() is None
    sim.spec = {**sim.spec, "mode": "Apply", "approval": {"planHash": "x" * 64}}
    sim.generation = 2
    sim.step()
    sim.run("preflight", preflight_result())
    sim.run("plan", {**PASSED, "plan": plan})
    assert sim.condition("Ready")["reason"] == "AwaitingApproval"
    assert sim.condition("Reconciling")["status"] == "True" and sim.launched() is None
    sim.spec = {**sim.spec, "approval": {"planHash": "h" * 64}}
    sim.generation = 3
    sim.step()
    sim.run("preflight", preflight_result())
    decision = sim.run("plan", {**PASSED, "plan": plan})
    assert decision.launch and decision.launch.phase == "apply"
    assert decision.launch.options["expect_plan_hash"] == "h" * 64


def rolled_forward(policy: str, **rollback: Any) -> Sim:
    sim = Sim()
    sim.spec["rollback"] = {"policy": policy, **rollback}
    migrated(sim)
    sim.spec = {**sim.spec, "targetVersion": 1}
    sim.generation = 2
    sim.step()
    sim.run("preflight", preflight_result(current_version=3, pending=[]))
    return sim


def test_lower_target_with_auto_policy_rolls_back_then_postflights() -> None:
    sim = rolled_forward("Auto")
    assert sim.last and sim.last.launch and sim.last.launch.options == {"to": 1}
    sim.run("rollback", {**PASSED, "current_version": 1, "rolled_back": [3, 2]})
    assert sim.last and sim.last.launch and sim.last.launch.options == {"to": 1}  # postflight
    sim.run("postflight", {**PASSED, "current_version": 1})
    assert (sim.condition("Ready")["status"], sim.condition("Ready")["reason"]) == (
        "True",
        "RolledBack",
    )
    assert sim.condition("RolledBack")["status"] == "True"
    assert sim.status["currentVersion"] == 1


def test_manual_policy_waits_for_the_approved_target_version() -> None:
    sim = rolled_forward("Manual")
    waiting = sim.condition("RolledBack")
    assert waiting["reason"] == "RollbackAwaitingApproval"
    assert "roll back from version 3 to 1" in waiting["message"]
    assert "spec.rollback.approvedTargetVersion: 1" in waiting["message"]
    assert sim.launched() is None and sim.condition("Stalled")["status"] == "False"
    approved = rolled_forward("Manual", approvedTargetVersion=1)
    assert approved.launched() == "rollback"


def test_never_policy_stalls() -> None:
    sim = rolled_forward("Never")
    assert sim.condition("Stalled")["reason"] == "RollbackForbidden"


def test_source_missing_applied_versions_rolls_back_below_them() -> None:
    sim = Sim()
    sim.spec["rollback"] = {"policy": "Auto"}
    migrated(sim)
    sim.generation = 2
    sim.step()
    sim.run(
        "preflight",
        preflight_result(
            current_version=3, latest_version=1, pending=[], missing_from_source=[2, 3]
        ),
    )
    assert sim.last and sim.last.launch and sim.last.launch.options == {"to": 1}


def test_failed_rollback_restores_the_backup_when_asked() -> None:
    sim = Sim()
    sim.spec["backup"] = {"enabled": True, "persistentVolumeClaim": "b"}
    sim.spec["rollback"] = {"policy": "Auto", "restoreBackupOnFailure": True}
    migrated(sim, backup=True)
    sim.spec = {**sim.spec, "targetVersion": 1}
    sim.generation = 2
    sim.step()
    sim.run("preflight", preflight_result(current_version=3, pending=[]))
    sim.run("backup", {**PASSED, "backup": {"size_bytes": 5}})
    failed = {"outcome": "failed", "exit_code": 4, "error": {"message": "down failed"}}
    decision = sim.run("rollback", failed, "failed")
    assert decision.launch and decision.launch.phase == "restore"
    sim.run("restore", PASSED)
    stalled = sim.condition("Stalled")
    assert stalled["reason"] == "RollbackFailed" and "restored" in stalled["message"]


def test_a_new_generation_forgets_the_old_jobs_but_keeps_what_is_known() -> None:
    sim = Sim()
    migrated(sim)
    sim.spec = {**sim.spec, "targetVersion": 3}
    sim.generation = 2
    decision = sim.step()
    assert decision.launch and decision.launch.job_name == "orders-g2-preflight"
    assert sim.status["currentVersion"] == 3 and "results" in sim.status
    assert list(sim.status["results"]) == []
    assert (sim.condition("Ready")["status"], sim.status["observedGeneration"]) == ("False", 2)


def test_a_job_created_by_a_previous_operator_is_adopted_not_duplicated() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    name = sim.status["jobs"].pop("apply")  # the status patch was lost with the operator
    sim.status["attempts"].pop("apply")
    decision = sim.step()
    assert decision.launch is None
    assert sim.status["jobs"]["apply"] == name


def test_pod_that_cannot_start_stalls_and_recovers() -> None:
    sim = Sim()
    sim.step()
    name = sim.status["jobs"]["preflight"]
    sim.jobs[name] = replace(sim.jobs[name], waiting='secret "db" not found')
    sim.step()
    assert (sim.condition("Stalled")["reason"], sim.status["phase"]) == (
        "ConfigNotFound",
        "Waiting",
    )
    assert 'secret "db" not found' in sim.condition("Stalled")["message"]
    sim.jobs[name] = replace(sim.jobs[name], waiting=None)
    sim.step()
    assert sim.condition("Stalled")["status"] == "False"


def test_missing_source_configmap_stalls_without_creating_a_job() -> None:
    sim = Sim()
    decision = sim.step(missing_sources=("m",))
    assert decision.launch is None
    assert sim.condition("Stalled")["reason"] == "SourceNotFound"
    assert "attempts" not in sim.status or sim.status["attempts"] == {}
    recovered = sim.step()
    assert recovered.launch and recovered.launch.job_name == "orders-g1-preflight"


def test_nothing_pending_goes_to_postflight_and_ready() -> None:
    sim = Sim()
    sim.step()
    decision = sim.run("preflight", preflight_result(current_version=3, pending=[]))
    assert decision.launch and decision.launch.phase == "postflight"
    sim.run("postflight", PASSED)
    assert sim.condition("Applied")["reason"] == "UpToDate"


def test_lasttransitiontime_moves_only_when_the_status_flips() -> None:
    sim = Sim()
    sim.step()
    first = sim.condition("Reconciling")["lastTransitionTime"]
    sim.now += timedelta(minutes=5)
    sim.run("preflight", preflight_result())
    assert sim.condition("Reconciling")["lastTransitionTime"] == first


def test_job_names_are_deterministic_and_fit_63_characters() -> None:
    assert job_name("orders", 3, "preflight", 2) == "orders-g3-preflight-2"
    long = job_name("a" * 80, 12345, "postflight", 17)
    assert len(long) <= 63 and long == job_name("a" * 80, 12345, "postflight", 17)
    assert long != job_name("a" * 79 + "b", 12345, "postflight", 17)


def test_status_patch_deletes_nested_keys_that_disappear() -> None:
    from migrate_safe.k8s.handlers import merge_patch

    before = {"results": {"preflight": {"outcome": "failed"}}, "phase": "Waiting", "pending": [1]}
    after = {"results": {}, "phase": "Preflight", "pending": [1]}
    assert merge_patch(before, after) == {"results": {"preflight": None}, "phase": "Preflight"}
    assert merge_patch(after, after) == {}


def test_a_job_that_succeeded_without_a_result_is_not_taken_for_a_success() -> None:
    sim = Sim()
    sim.step()
    sim.finish("preflight", None)
    decision = sim.step()
    assert decision.launch is None  # no apply, no postflight decided on missing knowledge
    assert sim.condition("Stalled")["reason"] == "PreflightFailed"
    assert "left no result" in sim.condition("Stalled")["message"]
