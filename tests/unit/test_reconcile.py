"""The operator's state machine, pure: every phase × Job outcome × spec change, no cluster.

Job results are made the way the harness makes them: a JSON report body through
`report.digest`, the same function that writes the pod's termination message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migrate_safe.k8s.actions import quiet
from migrate_safe.k8s.reconcile import (
    FAILURE_REASON,
    LOST_RESULT_SECONDS,
    RESULT_GRACE_SECONDS,
    Decision,
    Event,
    JobView,
    Rejection,
    World,
    decide,
    job_name,
    one_event,
    retry_delay,
)
from migrate_safe.k8s.spec import parse_spec
from migrate_safe.report import digest
from tests.unit.crd_defaults import defaulted

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
UID = "0a1b2c3d-1111-2222-3333-444455556666"
PASSED: dict[str, Any] = {"outcome": "succeeded", "exit_code": 0}


def applied(*versions: int) -> list[dict[str, int]]:
    return [{"version": v} for v in versions]


def preflight_result(**fields: Any) -> dict[str, Any]:
    base = {
        "current_version": None,
        "latest_version": 3,
        "pending": [1, 2, 3],
        "missing_from_source": [],
    }
    return {**PASSED, **base, **fields}


def apply_result(current: int, *versions: int) -> dict[str, Any]:
    return {**PASSED, "current_version": current, "pending": [], "applied": applied(*versions)}


def failure(exit_code: int, message: str, **details: Any) -> dict[str, Any]:
    transient = details.pop("transient", False)
    error = {"message": message, "details": details, "transient": transient}
    return {"outcome": "failed", "exit_code": exit_code, "error": error}


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
    uid: str = UID
    status: dict[str, Any] = field(default_factory=lambda: {"observedGeneration": -1})
    jobs: dict[str, JobView] = field(default_factory=dict)
    now: datetime = T0
    last: Decision | None = None
    world: World | None = None

    def step(self, **world: Any) -> Decision:
        self.world = World(
            "orders",
            "shop",
            self.generation,
            parse_spec(defaulted(self.spec)),  # as the API server hands it over
            self.status,
            self.jobs,
            self.now,
            uid=self.uid,
            **world,
        )
        decision = decide(self.world)
        self.status = decision.status
        if decision.launch:
            launch = decision.launch
            self.jobs[launch.job_name] = JobView(
                launch.job_name,
                launch.phase,
                self.generation,
                launch.attempt,
                "running",
                owner_uid=self.uid,
            )
        for name in decision.delete_jobs:
            self.jobs.pop(name, None)
        self.last = decision
        return decision

    def finish(
        self, phase: str, body: dict[str, Any] | None, state: str = "succeeded", name: str = ""
    ) -> None:
        name = name or self.status["jobs"][phase]
        stamp = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        result = digest({"command": phase, **body}) if body is not None else None
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

    def name(self, phase: str, attempt: int = 1) -> str:
        return job_name("orders", self.uid, self.generation, phase, attempt)


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
    sim.run("apply", apply_result(3, 1, 2, 3))
    sim.run("postflight", {**PASSED, "fingerprint": "f" * 64})


def test_first_visit_writes_observed_generation_and_conditions_and_starts_preflight() -> None:
    sim = Sim()
    decision = sim.step()
    assert sim.status["observedGeneration"] == 1
    assert (sim.condition("Ready")["status"], sim.condition("Reconciling")["status"]) == (
        "False",
        "True",
    )
    assert decision.launch and decision.launch.job_name == "orders-0a1b2-g1-preflight"
    assert decision.requeue_after is None  # the Job's own events wake the next pass


def test_the_passes_a_running_job_wakes_write_no_status() -> None:
    """One status write per step: the pass that creates a Job already says it is running, so
    the passes its Job's and pod's events wake (created, pod started) find nothing to write."""
    sim = Sim()
    first = sim.step()
    assert sim.world is not None and not quiet(sim.world, first)
    for phase, result in (
        ("preflight", preflight_result()),
        ("apply", apply_result(3, 1, 2, 3)),
        ("postflight", {**PASSED, "fingerprint": "f" * 64}),
    ):
        assert sim.launched() == phase
        launched = copy.deepcopy(sim.status)
        woken = sim.step()  # the Job is visible now, its pod running
        assert sim.status == launched
        assert quiet(sim.world, woken)  # no API call: the pass stays on the event loop
        assert sim.condition("Ready")["message"] == f"{phase} Job {sim.name(phase)} is running"
        sim.finish(phase, result)
        sim.step()
    assert sim.condition("Ready")["reason"] == "Migrated"


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


def test_each_pass_posts_one_event_that_says_everything_it_did() -> None:
    """A pass is one transition: the pass that records a phase's result and starts the next
    posts one Event with the outcome's reason and both messages; the last one says Migrated."""
    sim = Sim()
    passes = [sim.step()]
    passes.append(sim.run("preflight", preflight_result()))
    passes.append(sim.run("apply", apply_result(3, 1, 2, 3)))
    passes.append(sim.run("postflight", {**PASSED, "fingerprint": "f" * 64}))
    events = [(e.kind, e.reason) for d in passes for e in d.events]
    assert events == [
        ("Normal", "PreflightStarted"),
        ("Normal", "PreflightSucceeded"),
        ("Normal", "ApplySucceeded"),
        ("Normal", "Migrated"),
    ]
    applied_event = passes[2].events[0].message
    assert "applied 1, 2, 3; at version 3" in applied_event
    assert applied_event.endswith(f"created Job {sim.name('postflight')}")
    assert passes[3].events[0].message.endswith("at version 3")


def test_a_warning_in_a_pass_outweighs_the_rest_of_its_events() -> None:
    events = [
        Event("Normal", "GenerationObserved", "reconciling generation 2"),
        Event("Warning", "JobLost", "apply Job a of generation 1 disappeared"),
        Event("Normal", "PreflightStarted", "created Job b"),
    ]
    assert one_event(events) == [
        Event(
            "Warning",
            "JobLost",
            "reconciling generation 2; apply Job a of generation 1 disappeared; created Job b",
        )
    ]


def test_without_backup_and_postflight_it_goes_straight_to_ready() -> None:
    sim = Sim()
    sim.spec["postflight"] = {"enabled": False}
    sim.step()
    sim.run("preflight", preflight_result())
    sim.run("apply", apply_result(3, 1, 2, 3))
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
    message = '2_x failed: 2.up.sql:3: relation "x" does not exist (SQLSTATE 42P01)'
    result = failure(2, message, sqlstate="42P01", file="2.up.sql", line=3)
    decision = sim.run(phase, result, "failed")
    assert decision.launch is None
    stalled = sim.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", FAILURE_REASON[phase])
    # The harness already names file, line and SQLSTATE; a backup's failure names the claim.
    volume = "backup volume PersistentVolumeClaim b (at /backups): " if phase == "backup" else ""
    assert stalled["message"] == volume + message
    assert sim.condition("Reconciling")["status"] == "False"  # kstatus reads Reconciling first
    assert sim.status["phase"] == "Failed"
    warnings = [e for e in decision.events if e.kind == "Warning"]
    assert [e.reason for e in warnings] == [FAILURE_REASON[phase]]  # one Event per failure
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
    sim.now += timedelta(seconds=RESULT_GRACE_SECONDS - 1)
    waiting = sim.step()  # the pod's result may still be on its way through the other watch
    assert sim.condition("Ready")["reason"] == "Applying"
    assert waiting.requeue_after == 2  # a pass is due when the grace ends, event or not
    sim.now += timedelta(seconds=2)
    sim.step()
    assert "deadline" in sim.condition("Stalled")["message"]


def test_a_killed_harness_is_run_again_whose_result_then_decides() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    for attempt in (1, 2, 3):
        assert sim.last and sim.last.launch and sim.last.launch.phase == "apply"
        assert sim.last.launch.attempt == attempt
        sim.finish("apply", None, "failed")
        name = sim.status["jobs"]["apply"]
        sim.jobs[name] = replace(sim.jobs[name], failure_reason="BackoffLimitExceeded")
        sim.now += timedelta(seconds=RESULT_GRACE_SECONDS + 1)  # longer than the backoff too
        sim.step()
        if attempt < 3:  # retried as transient, never Stalled
            assert sim.condition("Stalled")["status"] == "False"
    stalled = sim.condition("Stalled")  # killed every time: a person has to look
    assert (stalled["status"], stalled["reason"]) == ("True", "ApplyFailed")
    assert "ended without a result (its process was killed)" in stalled["message"]
    retries = [h["outcome"] for h in sim.status["history"] if h["phase"] == "apply"]
    assert retries == ["failed", "failed", "failed"]


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
        "preflight": {"checks": [problem]},
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
    assert retry.launch and retry.launch.job_name == sim.name("preflight", 2)
    sim.run("preflight", preflight_result())
    assert sim.launched() == "apply"


@pytest.mark.parametrize("check", ["LedgerDirty", "ChecksumDrift", "Lint", "SchemaDrift"])
def test_preflight_failures_a_retry_cannot_fix_stall(check: str) -> None:
    sim = Sim()
    sim.step()
    result = {
        **blocked_preflight(),
        "preflight": {"checks": [{"name": check, "status": "fail", "summary": "bad"}]},
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
    sim.run("rollback", {**PASSED, "current_version": 1, "rolled_back": applied(3, 2)})
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
    failed = failure(4, "down failed")
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
    assert decision.launch and decision.launch.job_name == sim.name("preflight")
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
    assert recovered.launch and recovered.launch.job_name == sim.name("preflight")


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


def test_job_names_are_deterministic_per_incarnation_and_fit_63_characters() -> None:
    assert job_name("orders", UID, 3, "preflight", 2) == "orders-0a1b2-g3-preflight-2"
    assert job_name("orders", "ffff" + UID, 3, "preflight", 2) != "orders-0a1b2-g3-preflight-2"
    long = job_name("a" * 80, UID, 12345, "postflight", 17)
    assert len(long) <= 63 and long == job_name("a" * 80, UID, 12345, "postflight", 17)
    assert long != job_name("a" * 79 + "b", UID, 12345, "postflight", 17)


def test_status_patch_deletes_nested_keys_that_disappear() -> None:
    from migrate_safe.k8s.actions import merge_patch

    before = {"results": {"preflight": {"outcome": "failed"}}, "phase": "Waiting", "pending": [1]}
    after = {"results": {}, "phase": "Preflight", "pending": [1]}
    assert merge_patch(before, after) == {"results": {"preflight": None}, "phase": "Preflight"}
    assert merge_patch(after, after) == {}


def test_a_job_that_succeeded_without_a_result_is_not_taken_for_a_success() -> None:
    sim = Sim()
    sim.step()
    sim.finish("preflight", None)
    sim.now += timedelta(seconds=LOST_RESULT_SECONDS - 1)
    waiting = sim.step()  # a harness that exits 0 always leaves a result: wait for it
    assert waiting.launch is None and sim.condition("Ready")["reason"] == "PreflightRunning"
    sim.now += timedelta(seconds=2)
    decision = sim.step()
    assert decision.launch is None  # no apply, no postflight decided on missing knowledge
    assert sim.condition("Stalled")["reason"] == "PreflightFailed"
    assert "left no result" in sim.condition("Stalled")["message"]


# --- issue: the operator tells the truth through what users do to a resource -----------------


def foreign_job(phase: str, state: str, generation: int = 1) -> JobView:
    name = job_name("orders", "ffffffff-old", generation, phase, 1)
    result = digest({"command": phase, **apply_result(2, 1, 2)}) if state != "running" else None
    return JobView(name, phase, generation, 1, state, result, owner_uid="ffffffff-old")


def test_a_recreated_resource_never_adopts_its_predecessors_jobs() -> None:
    sim = Sim()
    old = {
        j.name: j
        for j in (foreign_job("preflight", "succeeded"), foreign_job("apply", "succeeded"))
    }
    sim.jobs.update(old)
    decision = sim.step()
    assert decision.launch and decision.launch.job_name == sim.name("preflight")
    assert sorted(decision.delete_jobs) == sorted(old)  # cleaned up, never read
    assert "results" not in sim.status or sim.status["results"] == {}
    assert [e.reason for e in decision.events] == ["PreflightStarted"]
    assert decision.events[0].message.startswith("reconciling generation 1; created Job ")
    assert sim.condition("Ready")["status"] == "False"


def test_a_predecessors_running_apply_is_waited_for_not_killed_nor_adopted() -> None:
    sim = Sim()
    running = foreign_job("apply", "running")
    sim.jobs[running.name] = running
    decision = sim.step()
    assert decision.launch is None and decision.delete_jobs == []
    assert sim.condition("Ready")["reason"] == "PreviousResourceJobRunning"
    assert running.name in sim.condition("Ready")["message"]
    assert sim.condition("Stalled")["status"] == "False"
    sim.jobs[running.name] = foreign_job("apply", "succeeded")
    decision = sim.step()
    assert decision.launch and decision.launch.phase == "preflight"
    assert decision.delete_jobs == [running.name]


def spec_changed_during_apply(sim: Sim, **spec: Any) -> str:
    sim.step()
    sim.run("preflight", preflight_result())
    apply_job = sim.status["jobs"]["apply"]
    sim.spec = {**sim.spec, **spec}
    sim.generation = 2
    return str(apply_job)


def test_a_spec_change_during_apply_waits_for_it_then_records_it() -> None:
    sim = Sim()
    apply_job = spec_changed_during_apply(sim, targetVersion=3)
    decision = sim.step()
    assert decision.launch is None  # no second generation in parallel
    ready = sim.condition("Ready")
    assert ready["reason"] == "PreviousGenerationRunning" and apply_job in ready["message"]
    assert sim.status["observedGeneration"] == 2
    sim.finish("apply", apply_result(2, 1, 2), name=apply_job)
    decision = sim.step()
    assert [job.name for job in decision.finished] == [apply_job]  # metrics count it
    assert sim.status["history"][-1]["job"] == apply_job
    assert sim.status["currentVersion"] == 2
    succeeded = [e for e in decision.events if e.reason == "ApplySucceeded"]
    assert len(succeeded) == 1 and "applied 1, 2; at version 2" in succeeded[0].message
    assert decision.launch and decision.launch.job_name == sim.name("preflight")
    assert "handoff" not in sim.status


def test_a_lower_target_during_apply_rolls_back_after_the_apply() -> None:
    sim = Sim()
    sim.spec["rollback"] = {"policy": "Auto"}
    apply_job = spec_changed_during_apply(sim, targetVersion=1)
    sim.step()
    sim.finish("apply", apply_result(2, 1, 2), name=apply_job)
    sim.step()
    sim.run("preflight", preflight_result(current_version=2, pending=[3]))
    assert sim.last and sim.last.launch and sim.last.launch.phase == "rollback"
    assert sim.last.launch.options == {"to": 1}


def test_an_earlier_generations_job_the_status_lost_is_still_waited_for() -> None:
    sim = Sim()
    apply_job = spec_changed_during_apply(sim, targetVersion=3)
    sim.status["jobs"] = {}  # the status patch that named it was lost with the operator
    sim.step()
    assert sim.condition("Ready")["reason"] == "PreviousGenerationRunning"
    assert sim.status["handoff"][0]["job"] == apply_job


def test_a_transient_failure_is_retried_with_backoff_never_stalled() -> None:
    sim = Sim()
    sim.step()
    unreachable = failure(
        5, "cannot connect to app@db:5432/app: connection refused", transient=True
    )
    decision = sim.run("preflight", unreachable, "failed")
    assert decision.launch is None
    assert sim.condition("Stalled")["status"] == "False"
    assert sim.condition("Reconciling")["status"] == "True"
    assert sim.condition("Ready")["reason"] == "TransientFailure"
    assert "retrying in 10s" in sim.condition("Ready")["message"]
    assert [e.reason for e in decision.events] == ["PreflightRetrying"]
    sim.now += timedelta(seconds=retry_delay(1))
    retry = sim.step()
    assert retry.launch and retry.launch.job_name == sim.name("preflight", 2)
    sim.run("preflight", unreachable, "failed")
    assert "retrying in 20s" in sim.condition("Ready")["message"]
    sim.now += timedelta(seconds=retry_delay(2))
    sim.step()
    sim.run("preflight", preflight_result())
    assert sim.launched() == "apply"
    assert [retry_delay(n) for n in (1, 2, 3, 6, 9)] == [10, 20, 40, 300, 300]


def test_an_apply_that_ran_out_of_lock_retries_is_retried() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    locked = failure(
        2, "1_a failed after 11 attempts: lock timeout", sqlstate="55P03", transient=True
    )
    sim.run("apply", locked, "failed")
    assert sim.condition("Applied")["status"] == "Unknown"
    assert sim.condition("Stalled")["status"] == "False"
    sim.now += timedelta(seconds=10)
    assert sim.step().launch is not None


def test_a_target_version_missing_from_the_source_is_an_invalid_spec() -> None:
    sim = Sim()
    sim.spec["targetVersion"] = 9
    sim.step()
    problem = {
        "name": "TargetVersion",
        "status": "fail",
        "summary": "version 9 is not in the source",
    }
    refused = {**preflight_result(), **failure(1, "preflight failed")}
    sim.run("preflight", {**refused, "preflight": {"checks": [problem]}}, "failed")
    stalled = sim.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "spec.targetVersion" in stalled["message"] and sim.launched() is None


def test_a_job_the_api_server_refuses_stalls_with_its_reason_until_the_spec_changes() -> None:
    sim = Sim()
    first = sim.step()
    assert first.launch is not None
    sim.jobs.pop(first.launch.job_name)  # it was never created
    refused = Rejection("preflight", first.launch.job_name, "422 Unprocessable Entity: too long")
    sim.step(rejected=refused)
    stalled = sim.condition("Stalled")
    assert (stalled["reason"], stalled["message"]) == ("JobRejected", refused.message)
    assert sim.step().launch is None  # no retry loop against the API server
    sim.generation = 2
    assert sim.step().launch is not None


def test_a_partly_failed_apply_reports_the_version_it_reached() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    partly = {**failure(2, "3_c failed: boom"), "current_version": 2, "pending": [3]}
    partly["applied"] = applied(1, 2)
    sim.run("apply", partly, "failed")
    assert sim.status["currentVersion"] == 2 and sim.status["pendingCount"] == 1


def test_an_apply_that_applied_nothing_is_up_to_date() -> None:
    sim = Sim()
    sim.step()
    sim.run("preflight", preflight_result())
    sim.run("apply", apply_result(3))
    assert sim.condition("Applied")["reason"] == "UpToDate"


def test_awaiting_approval_says_the_approved_hash_no_longer_matches() -> None:
    sim = Sim()
    sim.spec["approval"] = {"planHash": "a" * 64}
    sim.step()
    sim.run("preflight", preflight_result())
    plan = {"hash": "b" * 64, "direction": "up", "migrations": [], "lint": {}}
    sim.run("plan", {**PASSED, "plan": plan})
    message = sim.condition("Ready")["message"]
    assert "a" * 64 in message and "does not match the current plan " + "b" * 64 in message
