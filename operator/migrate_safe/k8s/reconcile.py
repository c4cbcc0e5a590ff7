"""The reconcile state machine, pure: (spec, status, observed Jobs) → new status, the Job to
launch, Jobs to clean up, events. No Kubernetes calls here; handlers.py executes what this
decides.

For each spec generation: preflight → [plan → approval] → [backup] → apply → [postflight], or,
when the spec asks for an older state (a lower targetVersion, or a source that lost applied
versions), preflight → [backup] → rollback → [postflight], as rollback.policy allows.

What it relies on, so that status never claims what did not happen:
- A Job belongs to one incarnation of the resource (its UID): Jobs left by a deleted resource
  of the same name are never adopted nor read; they are cleaned up, or waited for while they
  still change the database.
- A mutating Job (backup, apply, rollback, restore) of an older generation is waited for and
  its result recorded before the new generation starts from the truth.
- A failure the harness calls transient (database unreachable, lock still taken) is retried
  with backoff (10 s doubling to 5 min); preflight checks blocked by other sessions are retried
  every spec.preflight.retryInterval; every other failure stalls the generation until the spec
  changes.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from migrate_safe.durations import parse_duration
from migrate_safe.k8s import conditions as c
from migrate_safe.k8s.spec import DatabaseMigrationSpec
from migrate_safe.results import ErrorInfo, PhaseResult

Status = dict[str, Any]

# Preflight checks that fail because of what other sessions do right now: worth retrying.
TRANSIENT_CHECKS = frozenset(
    {
        "LongTransactions",
        "IdleInTransaction",
        "BlockingLocks",
        "LongTransactionOnTouchedTable",
        "ReplicationLag",
    }
)
# Preflight checks that fail because the spec asks for something that cannot be.
SPEC_CHECKS = frozenset({"TargetVersion"})
# Phases whose Job changes the database: never abandoned, never run two at a time.
MUTATING = frozenset({"backup", "apply", "rollback", "restore"})
HISTORY_LIMIT = 20
# Phases whose Job mounts spec.backup.persistentVolumeClaim (jobs.USES_BACKUP_VOLUME).
BACKUP_VOLUME_PHASES = frozenset({"backup", "restore"})
# A finished Job and its pod's termination message arrive through different watches. A failed
# Job without a result waits this long for it before its own message is taken instead (a
# crash may leave none); a succeeded one, which always leaves a result, this long before it
# counts as lost (its pod deleted by hand): deciding without it would skip the apply.
RESULT_GRACE_SECONDS = 30.0
LOST_RESULT_SECONDS = 600.0
RETRY_FIRST, RETRY_MAX = 10.0, 300.0
# A Job whose harness was killed before it could report is run again this many times; the
# run after tells what the database is in (crashing every time: it stalls).
CRASH_RETRIES = 2

# What each phase is called while it runs: (status.phase, Ready reason).
RUNNING = {
    "preflight": ("Preflight", "PreflightRunning"),
    "plan": ("Planning", "Planning"),
    "backup": ("BackingUp", "BackingUp"),
    "apply": ("Applying", "Applying"),
    "postflight": ("Postflight", "PostflightRunning"),
    "rollback": ("RollingBack", "RollingBack"),
    "restore": ("Restoring", "RestoringBackup"),
}
# The per-phase condition each phase's outcome sets.
PHASE_CONDITION = {
    "preflight": c.PREFLIGHT_PASSED,
    "backup": c.BACKED_UP,
    "apply": c.APPLIED,
    "postflight": c.POSTFLIGHT_PASSED,
    "rollback": c.ROLLED_BACK,
}
FAILURE_REASON = {
    "preflight": "PreflightFailed",
    "plan": "PlanFailed",
    "backup": "BackupFailed",
    "apply": "ApplyFailed",
    "postflight": "PostflightFailed",
    "rollback": "RollbackFailed",
    "restore": "RestoreFailed",
}


@dataclass(frozen=True)
class JobView:
    """What the operator knows of one of its Jobs (from the Job and its pod)."""

    name: str
    phase: str
    generation: int
    attempt: int
    state: str  # running | succeeded | failed
    result: PhaseResult | None = None  # the harness's termination message
    message: str = ""  # why a Job failed without a result (deadline, crash)
    failure_reason: str = ""  # the Job's Failed condition: DeadlineExceeded, BackoffLimitExceeded
    waiting: str | None = None  # a pod that cannot start: missing Secret or ConfigMap
    started_at: str | None = None
    finished_at: str | None = None
    owner_uid: str = ""  # the incarnation of the resource that created it

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


@dataclass(frozen=True)
class Rejection:
    """The API server refused the Job this pass tried to create (a 4xx other than 409)."""

    phase: str
    job: str
    message: str


@dataclass(frozen=True)
class World:
    name: str
    namespace: str
    generation: int
    spec: DatabaseMigrationSpec
    status: Status
    jobs: dict[str, JobView]  # every Job labelled for this name, of any incarnation
    now: datetime
    uid: str = ""
    # ConfigMaps of the source found missing when a Job was about to be launched.
    missing_sources: tuple[str, ...] = ()
    rejected: Rejection | None = None


@dataclass(frozen=True)
class Launch:
    phase: str
    attempt: int
    job_name: str
    options: dict[str, Any]  # what jobs.py turns into harness flags


@dataclass(frozen=True)
class Event:
    kind: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Decision:
    status: Status
    launch: Launch | None = None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    finished: list[JobView] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)  # left by an earlier incarnation


def job_name(name: str, uid: str, generation: int, phase: str, attempt: int) -> str:
    """Deterministic per incarnation, ≤ 63 characters: a restarted operator finds the Job it
    started, and a re-created resource of the same name never meets its predecessor's."""
    suffix = f"-{uid[:5]}-g{generation}-{phase}" if uid else f"-g{generation}-{phase}"
    suffix += f"-{attempt}" if attempt > 1 else ""
    if len(name) + len(suffix) <= 63:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: 63 - len(suffix) - 9]}-{digest}{suffix}"


def retry_delay(attempt: int) -> float:
    """Backoff after the attempt-th transient failure of a phase: 10 s, 20 s, … 5 min."""
    return float(min(RETRY_FIRST * 2 ** max(0, attempt - 1), RETRY_MAX))


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Stored:
    """A finished phase as status keeps it: the result, the Job and when it finished."""

    result: PhaseResult
    job: str
    finished_at: str

    def to_status(self) -> dict[str, Any]:
        return {"result": self.result.to_json(), "job": self.job, "finishedAt": self.finished_at}

    @classmethod
    def from_status(cls, entry: dict[str, Any]) -> Stored:
        return cls(PhaseResult.from_json(entry["result"]), entry["job"], entry["finishedAt"])


class Reconciler:
    """One pass over one resource. Methods mutate self.status, then decide() returns it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.spec = world.spec
        self.now = _timestamp(world.now)
        self.status: Status = copy.deepcopy(world.status)
        self.decision = Decision(self.status)
        settled = {name: self._settled(job) for name, job in world.jobs.items()}
        self.jobs = {n: j for n, j in settled.items() if j.owner_uid == world.uid}
        self.foreign = [j for j in settled.values() if j.owner_uid != world.uid]

    def _settled(self, job: JobView) -> JobView:
        """A finished Job whose result has not arrived yet still counts as running, for as
        long as the result may still come (see RESULT_GRACE_SECONDS)."""
        if job.result is not None or not job.finished:
            return job
        wait = LOST_RESULT_SECONDS if job.state == "succeeded" else RESULT_GRACE_SECONDS
        finished = _parse(job.finished_at) if job.finished_at else self.world.now
        left = wait - (self.world.now - finished).total_seconds()
        if left >= 0:
            self._requeue(left + 1)  # the result's own event normally comes first
            return replace(job, state="running")
        return job

    def _requeue(self, after: float) -> None:
        """The next pass is due in `after` seconds at the latest."""
        current = self.decision.requeue_after
        self.decision.requeue_after = after if current is None else min(current, after)

    # --- entry point ---------------------------------------------------------------------

    def decide(self) -> Decision:
        if self.status.get("observedGeneration") != self.world.generation:
            self._start_generation()
        if self.world.rejected is not None:
            self._remember_rejection(self.world.rejected)
        self._track_earlier_generations()
        self._record_finished_jobs()
        if not self._waiting_for_other_jobs():
            self._adopt_orphan_jobs()
            running = self._running_job()
            if running is not None:
                self._in_progress_of(running)
            else:
                self._next_step()
        self.decision.status = self.status
        self.decision.events = one_event(self.decision.events)
        return self.decision

    # --- bookkeeping -----------------------------------------------------------------------

    def _start_generation(self) -> None:
        """A new spec: forget the last generation's Jobs and results, keep what is known of
        the database (version, backup, fingerprint) and the history. Its mutating Jobs that
        have not reported yet are handed over: waited for, and their results recorded."""
        handoff = self.status.setdefault("handoff", [])
        previous = self.status.get("observedGeneration", -1)
        for phase, name in self._jobs().items():
            if phase in MUTATING and phase not in self._results():
                handoff.append({"job": name, "phase": phase, "generation": previous})
        for key in ("jobs", "attempts", "results", "plan", "rejected"):
            self.status.pop(key, None)
        self.status["observedGeneration"] = self.world.generation
        self.status.setdefault("conditions", [])
        self.status["targetVersion"] = self.spec.target_version
        for kind in PHASE_CONDITION.values():
            self.status["conditions"] = [
                cond for cond in self.status["conditions"] if cond["type"] != kind
            ]
        self._progress("Pending", "NewGeneration", f"generation {self.world.generation} observed")
        self._event(
            "Normal", "GenerationObserved", f"reconciling generation {self.world.generation}"
        )

    def _track_earlier_generations(self) -> None:
        """A running mutating Job of an earlier generation that status does not name (the
        operator died before recording it): hand it over too."""
        handoff = self.status.setdefault("handoff", [])
        named = {entry["job"] for entry in handoff}
        for job in self.jobs.values():
            earlier = job.generation < self.world.generation
            if earlier and job.phase in MUTATING and not job.finished and job.name not in named:
                handoff.append({"job": job.name, "phase": job.phase, "generation": job.generation})
        if not handoff:
            self.status.pop("handoff")

    def _jobs(self) -> dict[str, str]:
        return self.status.setdefault("jobs", {})  # type: ignore[no-any-return]

    def _results(self) -> dict[str, dict[str, Any]]:
        return self.status.setdefault("results", {})  # type: ignore[no-any-return]

    def _stored(self, phase: str) -> Stored | None:
        entry = self._results().get(phase)
        if entry is None:
            return None
        try:
            return Stored.from_status(entry)
        except (ValueError, KeyError):
            return None  # written by an older operator: run the phase again

    def _attempt(self, phase: str) -> int:
        return int(self.status.get("attempts", {}).get(phase, 0))

    def _adopt_orphan_jobs(self) -> None:
        """A Job of this generation that status does not name: the operator died between
        creating it and recording it. Adopt the newest attempt instead of starting another."""
        for job in sorted(self.jobs.values(), key=lambda j: j.attempt):
            if job.generation != self.world.generation:
                continue
            known = self._jobs().get(job.phase)
            if known is None or (known != job.name and job.attempt > self._attempt(job.phase)):
                self._jobs()[job.phase] = job.name
                self.status.setdefault("attempts", {})[job.phase] = job.attempt
                self._results().pop(job.phase, None)
                # Its creation was never recorded (the pass that made it lost its status
                # write, or the operator died): say it now, once.
                phase = job.phase.capitalize()
                self._event("Normal", f"{phase}Started", f"adopted Job {job.name}")

    def _record_finished_jobs(self) -> None:
        for phase, name in list(self._jobs().items()):
            job = self.jobs.get(name)
            if job is None or not job.finished or phase in self._results():
                continue
            stored = Stored(_result_of(job), job.name, job.finished_at or self.now)
            self._results()[phase] = stored.to_status()
            self._record(job, stored.result)
        for entry in list(self.status.get("handoff", [])):
            job = self.jobs.get(entry["job"])
            if job is None:
                self._event(
                    "Warning",
                    "JobLost",
                    f"{entry['phase']} Job {entry['job']} of generation {entry['generation']} "
                    "disappeared before its result was read; the next preflight reads the ledger",
                )
            elif not job.finished:
                continue
            else:
                self._record(job, _result_of(job))
            self.status["handoff"].remove(entry)
        if not self.status.get("handoff"):
            self.status.pop("handoff", None)

    def _record(self, job: JobView, result: PhaseResult) -> None:
        """A finished Job: its history row, what it learnt of the database, one Event for a
        success or a retry (a terminal failure's Event comes with the stall it causes)."""
        self.decision.finished.append(job)
        self._absorb(job, result)
        history = self.status.setdefault("history", [])
        history.append(
            {
                "generation": job.generation,
                "phase": job.phase,
                "job": job.name,
                "outcome": "succeeded" if result.succeeded else "failed",
                "exitCode": result.exit_code,
                "message": describe(result)[:500],
                "startedAt": job.started_at or "",
                "finishedAt": job.finished_at or self.now,
            }
        )
        del history[:-HISTORY_LIMIT]
        phase = job.phase.capitalize()
        if result.succeeded:
            summary = _success_summary(job.phase, result)
            self._event("Normal", f"{phase}Succeeded", f"{job.phase} Job {job.name}: {summary}")
        elif result.transient:
            self._event(
                "Warning",
                f"{phase}Retrying",
                f"{job.phase} Job {job.name} failed, will retry: {describe(result)}"[:1024],
            )
        elif job.generation != self.world.generation:
            # A handed-over Job stalls nothing: the new generation starts from the truth.
            self._event(
                "Warning",
                FAILURE_REASON[job.phase],
                f"{job.phase} Job {job.name} of generation {job.generation} failed: "
                f"{describe(result)}"[:1024],
            )

    def _absorb(self, job: JobView, result: PhaseResult) -> None:
        """Copy what a finished Job learned about the database into status."""
        if result.ledger is not None:
            ledger = result.ledger
            self.status["currentVersion"] = ledger.current_version
            self.status["pending"] = list(ledger.pending)
            self.status["pendingCount"] = ledger.pending_count
        if result.fingerprint:
            self.status["fingerprint"] = result.fingerprint
        if job.phase == "backup" and result.succeeded and result.backup is not None:
            backup = result.backup
            self.status["lastBackup"] = {
                "path": backup.path,
                "sizeBytes": backup.size_bytes,
                "sha256": backup.sha256,
                "time": backup.created_at or self.now,
            }
        if job.phase == "plan" and result.plan is not None:
            self.status["plan"] = result.plan.to_json() | {"generation": job.generation}

    def _remember_rejection(self, rejected: Rejection) -> None:
        """Do not ask again what the API server refused: the spec must change first."""
        self._jobs().pop(rejected.phase, None)
        attempts = self.status.setdefault("attempts", {})
        attempts[rejected.phase] = max(0, attempts.get(rejected.phase, 1) - 1)
        self.status["rejected"] = {"phase": rejected.phase, "message": rejected.message}

    def _waiting_for_other_jobs(self) -> bool:
        """Jobs that still change the database and are not this generation's: wait for them
        (the new generation must start from what they leave), and clean up the rest."""
        blocking = [j for j in self.foreign if j.phase in MUTATING and not j.finished]
        self.decision.delete_jobs = sorted(j.name for j in self.foreign if j not in blocking)
        if blocking:
            job = blocking[0]
            self._progress(
                "Waiting",
                "PreviousResourceJobRunning",
                f"{job.phase} Job {job.name} of an earlier DatabaseMigration named "
                f"{self.world.name} is still running; waiting for it to finish",
            )
        elif self.status.get("handoff"):
            entry = self.status["handoff"][0]
            self._progress(
                "Waiting",
                "PreviousGenerationRunning",
                f"{entry['phase']} Job {entry['job']} of generation {entry['generation']} is "
                f"still running; generation {self.world.generation} starts when it has finished",
            )
        else:
            return False
        return True  # the Job's own events wake the next pass

    def _running_job(self) -> JobView | None:
        for phase, name in self._jobs().items():
            if phase in self._results():
                continue
            job = self.jobs.get(name)
            # A Job just created may not be visible yet: keep waiting for it.
            return job or JobView(
                name, phase, self.world.generation, self._attempt(phase), "running"
            )
        return None

    # --- in progress ---------------------------------------------------------------------

    def _in_progress_of(self, job: JobView) -> None:
        if job.waiting:
            # The pod cannot start (a Secret or ConfigMap is missing): nothing progresses
            # until someone creates it, then the kubelet retries by itself.
            self._stall(
                "ConfigNotFound",
                f"{job.phase} Job {job.name} cannot start: {job.waiting}",
                phase="Waiting",
            )
            return
        self._running(job.phase, job.name)

    def _running(self, phase: str, name: str) -> None:
        """The status of a phase whose Job exists. The pass that creates the Job writes it
        already, so the passes its Job's and pod's events wake find nothing to write."""
        phase_name, reason = RUNNING[phase]
        self._progress(phase_name, reason, f"{phase} Job {name} is running")
        kind = PHASE_CONDITION.get(phase)
        if kind:
            self._condition(kind, c.UNKNOWN, reason, f"Job {name} is running")

    # --- the next step -------------------------------------------------------------------

    def _next_step(self) -> None:
        stored = self._stored("preflight")
        if stored is None:
            self._launch("preflight")
            return
        preflight = stored.result
        if not preflight.succeeded:
            self._after_failed_preflight(stored)
            return
        self._condition(c.PREFLIGHT_PASSED, c.TRUE, "PreflightPassed", _warnings_of(preflight))
        route, to_version = _route(self.spec, preflight)
        if route == "down":
            self._roll_back(to_version, preflight)
        elif route == "up":
            self._roll_forward()
        else:
            current = self.status.get("currentVersion")
            self._condition(c.APPLIED, c.TRUE, "UpToDate", f"nothing to apply: at {current}")
            self._finish_with_postflight(self.spec.target_version, "Migrated")

    def _after_failed_preflight(self, stored: Stored) -> None:
        preflight = stored.result
        failed = preflight.failed_checks()
        message = describe(preflight)
        if failed and set(failed) <= TRANSIENT_CHECKS:
            self._condition(c.PREFLIGHT_PASSED, c.FALSE, "PreflightBlocked", message)
            wait = _seconds(self.spec.preflight.retry_interval)
            self._retry_after(stored, "preflight", wait, "PreflightBlocked", message)
            return
        if preflight.transient:
            self._retry_transient(stored, "preflight")
            return
        if set(failed) & SPEC_CHECKS:
            self._condition(c.PREFLIGHT_PASSED, c.FALSE, "InvalidSpec", message)
            self._stall("InvalidSpec", f"spec.targetVersion: {message}")
            return
        self._condition(c.PREFLIGHT_PASSED, c.FALSE, "PreflightFailed", message)
        self._stall("PreflightFailed", message)

    def _retry_transient(
        self, stored: Stored, phase: str, options: dict[str, Any] | None = None
    ) -> None:
        """A failure that may pass by itself: Reconciling (never Stalled), retried with
        backoff, so a corrected Secret or a recovered server is picked up unasked."""
        attempt = self._attempt(phase)
        kind = PHASE_CONDITION.get(phase)
        message = describe(stored.result)
        if kind:
            self._condition(kind, c.UNKNOWN, f"{phase.capitalize()}Retrying", message)
        self._retry_after(stored, phase, retry_delay(attempt), "TransientFailure", message, options)

    def _retry_after(
        self,
        stored: Stored,
        phase: str,
        wait: float,
        reason: str,
        message: str,
        options: dict[str, Any] | None = None,
    ) -> None:
        elapsed = (self.world.now - _parse(stored.finished_at)).total_seconds()
        if elapsed >= wait:
            self._results().pop(phase)
            self._launch(phase, options or {})
            return
        self._progress(
            "Waiting",
            reason,
            f"{phase} attempt {self._attempt(phase)} failed: {message}; retrying in "
            f"{wait - elapsed:.0f}s",
        )
        self.decision.requeue_after = max(1.0, wait - elapsed)

    def _roll_forward(self) -> None:
        approval = self.spec.approval.plan_hash or ""
        if self.spec.mode == "Plan" or approval:
            plan = self._phase_result("plan")
            if plan is None:
                return
            published = self.status.get("plan", {}).get("hash", "")
            if self.spec.mode == "Plan":
                self._done(
                    "Planned",
                    f"plan {published} published; set spec.mode: Apply "
                    "(and spec.approval.planHash) to apply it",
                    phase="Planned",
                )
                return
            if approval != published:
                self._progress(
                    "AwaitingApproval",
                    "AwaitingApproval",
                    f"spec.approval.planHash {approval} does not match the current plan "
                    f"{published}: the migrations or the target changed since that plan was "
                    f"approved; review the new plan and set spec.approval.planHash: {published}",
                )
                return
        if not self._backup_done():
            return
        applied = self._phase_result("apply")
        if applied is None:
            return
        current = self.status.get("currentVersion")
        if applied.applied:
            versions = ", ".join(map(str, applied.applied))
            self._condition(
                c.APPLIED, c.TRUE, "Applied", f"applied {versions}; at version {current}"
            )
        else:
            self._condition(c.APPLIED, c.TRUE, "UpToDate", f"nothing to apply: at {current}")
        self._finish_with_postflight(self.spec.target_version, "Migrated")

    def _roll_back(self, to_version: int, preflight: PhaseResult) -> None:
        rollback = self.spec.rollback
        policy = rollback.policy
        what = _rollback_summary(preflight, to_version)
        if policy == "Never":
            self._condition(c.ROLLED_BACK, c.FALSE, "RollbackForbidden", what)
            self._stall(
                "RollbackForbidden", f"the spec asks to {what}, but spec.rollback.policy is Never"
            )
            return
        if policy == "Manual" and rollback.approved_target_version != to_version:
            message = (
                f"would {what}; approve with spec.rollback.approvedTargetVersion: "
                f"{to_version} (or spec.rollback.policy: Auto)"
            )
            self._condition(c.ROLLED_BACK, c.FALSE, "RollbackAwaitingApproval", message)
            self._progress("AwaitingApproval", "RollbackAwaitingApproval", message)
            return
        if not self._backup_done():
            return
        stored = self._stored("rollback")
        if stored is None:
            self._launch("rollback", {"to": to_version})
            return
        if stored.result.transient:
            self._retry_transient(stored, "rollback", {"to": to_version})
            return
        if not stored.result.succeeded:
            self._after_failed_rollback(stored.result)
            return
        self._condition(c.ROLLED_BACK, c.TRUE, "RolledBack", what)
        self._finish_with_postflight(to_version, "RolledBack")

    def _after_failed_rollback(self, result: PhaseResult) -> None:
        message = describe(result)
        self._condition(c.ROLLED_BACK, c.FALSE, "RollbackFailed", message)
        restore = self.spec.rollback.restore_backup_on_failure
        backup = self._stored("backup")
        if restore and backup is not None and backup.result.succeeded:
            restored = self._phase_result("restore")
            if restored is None:
                return
            self._stall("RollbackFailed", f"{message}; the backup taken before it was restored")
            return
        self._stall("RollbackFailed", message)

    def _backup_done(self) -> bool:
        if not self.spec.backup.enabled:
            self._condition(c.BACKED_UP, c.FALSE, "BackupDisabled", "spec.backup.enabled is false")
            return True
        result = self._phase_result("backup")
        if result is None:
            return False
        size = result.backup.size_bytes if result.backup else 0
        self._condition(c.BACKED_UP, c.TRUE, "BackedUp", f"verified backup of {size} bytes")
        return True

    def _finish_with_postflight(self, target: int | None, reason: str) -> None:
        if self.spec.postflight.enabled:
            result = self._phase_result("postflight", {"to": target})
            if result is None:
                return
            self._condition(
                c.POSTFLIGHT_PASSED,
                c.TRUE,
                "PostflightPassed",
                f"schema fingerprint {result.fingerprint or ''}",
            )
        version = self.status.get("currentVersion")
        self._done(reason, f"at version {version}", phase="Succeeded")

    def _phase_result(
        self, phase: str, options: dict[str, Any] | None = None
    ) -> PhaseResult | None:
        """The phase's result when it succeeded; None when it is launched now, retried after a
        transient failure, or failed (then the generation stalls)."""
        stored = self._stored(phase)
        if stored is None:
            self._launch(phase, options or {})
            return None
        if stored.result.succeeded:
            return stored.result
        if stored.result.transient:
            self._retry_transient(stored, phase, options)
            return None
        message = describe(stored.result)
        if phase in BACKUP_VOLUME_PHASES:
            # The harness names the path inside the pod; the user acts on the claim.
            claim = self.spec.backup.persistent_volume_claim
            message = f"backup volume PersistentVolumeClaim {claim} (at /backups): {message}"
        kind = PHASE_CONDITION.get(phase)
        if kind:
            self._condition(kind, c.FALSE, FAILURE_REASON[phase], message)
        self._stall(FAILURE_REASON[phase], message)
        return None

    def _launch(self, phase: str, options: dict[str, Any] | None = None) -> None:
        if self.world.missing_sources:
            # No Job until the source exists; each pass looks again, so this recovers by
            # itself once the ConfigMaps appear.
            listed = ", ".join(self.world.missing_sources)
            self._stall(
                "SourceNotFound",
                f"ConfigMap(s) {listed} not found in namespace {self.world.namespace}",
            )
            self.decision.requeue_after = 5.0
            return
        rejected = self.status.get("rejected")
        if rejected and rejected["phase"] == phase:
            self._stall("JobRejected", rejected["message"])
            return
        attempt = self._attempt(phase) + 1
        name = job_name(self.world.name, self.world.uid, self.world.generation, phase, attempt)
        self.status.setdefault("attempts", {})[phase] = attempt
        self._jobs()[phase] = name
        launch_options = dict(options or {})
        approval = self.spec.approval.plan_hash
        if phase == "apply" and approval:
            launch_options["expect_plan_hash"] = approval
        self.decision.launch = Launch(phase, attempt, name, launch_options)
        self._running(phase, name)
        self._event("Normal", f"{phase.capitalize()}Started", f"created Job {name}")

    # --- conditions ------------------------------------------------------------------------

    def _condition(self, kind: str, status: str, reason: str, message: str) -> None:
        self.status["conditions"] = c.set_condition(
            self.status.setdefault("conditions", []),
            kind,
            status,
            reason,
            message,
            generation=self.world.generation,
            now=self.now,
        )

    def _progress(self, phase: str, reason: str, message: str) -> None:
        """In progress (or waiting on a person): Ready=False, Reconciling=True, not Stalled."""
        self.status["phase"] = phase
        self._condition(c.READY, c.FALSE, reason, message)
        self._condition(c.RECONCILING, c.TRUE, reason, message)
        self._condition(c.STALLED, c.FALSE, reason, "")

    def _stall(self, reason: str, message: str, *, phase: str = "Failed") -> None:
        """Cannot progress without a change: Stalled=True and Reconciling=False (kstatus stops
        at the first True of the two in list order, and Reconciling comes first), so Flux and
        Argo CD fail fast. Causes that a person fixes outside the spec (a missing Secret)
        still recover: every pass looks again."""
        newly = not c.is_true(self.status.get("conditions", []), c.STALLED)
        self.status["phase"] = phase
        self._condition(c.READY, c.FALSE, reason, message)
        self._condition(c.RECONCILING, c.FALSE, reason, message)
        self._condition(c.STALLED, c.TRUE, reason, message)
        if newly:
            self._event("Warning", reason, message)

    def _done(self, reason: str, message: str, *, phase: str) -> None:
        newly = not c.is_true(self.status.get("conditions", []), c.READY)
        self.status["phase"] = phase
        self._condition(c.READY, c.TRUE, reason, message)
        self._condition(c.RECONCILING, c.FALSE, reason, "")
        self._condition(c.STALLED, c.FALSE, reason, "")
        if newly:
            self._event("Normal", reason, message)

    def _event(self, kind: str, reason: str, message: str) -> None:
        self.decision.events.append(Event(kind, reason, message[:1024]))


def decide(world: World) -> Decision:
    return Reconciler(world).decide()


def one_event(events: list[Event]) -> list[Event]:
    """One Event per pass, as a pass is one transition: the pass that records a phase's
    result and starts the next says both in one Event. It carries the weightiest reason (a
    Warning, then an outcome, then a start), the latest of equals, and every message in order."""
    if len(events) < 2:
        return events
    chosen = max(reversed(events), key=_weight)
    message = "; ".join(event.message for event in events)
    return [Event(chosen.kind, chosen.reason, message[:1024])]


def _weight(event: Event) -> int:
    if event.kind == "Warning":
        return 3
    if event.reason == "GenerationObserved":
        return 0
    return 1 if event.reason.endswith("Started") else 2


# --- pure helpers ------------------------------------------------------------------------------


def _result_of(job: JobView) -> PhaseResult:
    """What a finished Job reported; a Job without a result is a failure with its own message
    (a crash, a deadline, a pod deleted by hand): nothing is known of the database.

    A failed one (the harness killed: SIGKILL, out of memory, a lost node) is retried, at
    most CRASH_RETRIES times: the next run reads the ledger first, so it either finds nothing
    done (a transaction dies with its session) or refuses a dirty version, naming it and the
    way out, which is what the user needs to read."""
    if job.result is not None:
        return job.result
    message = job.message or "the Job's pod left no result (termination message)"
    killed = job.state == "failed" and job.failure_reason == "BackoffLimitExceeded"
    retry = killed and job.attempt <= CRASH_RETRIES
    if killed:
        message = f"{job.phase} Job {job.name} ended without a result (its process was killed)"
    return PhaseResult(job.phase, "failed", -1, error=ErrorInfo(message, transient=retry))


def _route(spec: DatabaseMigrationSpec, preflight: PhaseResult) -> tuple[str, int]:
    """up, down (with the version to roll back to) or none, from what preflight saw."""
    ledger = preflight.ledger
    current = ledger.current_version if ledger else None
    latest = ledger.latest_version if ledger else None
    target = spec.target_version if spec.target_version is not None else latest
    missing = list(ledger.missing_from_source) if ledger else []
    candidates = []
    if missing:
        candidates.append(min(missing) - 1)
    if current is not None and target is not None and target < current:
        candidates.append(target)
    if candidates:
        return "down", max(0, min(candidates))
    if ledger and ledger.pending_count:
        return "up", target or 0
    return "none", current or 0


def _rollback_summary(preflight: PhaseResult, to_version: int) -> str:
    ledger = preflight.ledger
    current = (ledger.current_version if ledger else None) or 0
    missing = list(ledger.missing_from_source) if ledger else []
    gone = f" (versions {', '.join(map(str, missing))} left the source)" if missing else ""
    return f"roll back from version {current} to {to_version}{gone}"


def describe(result: PhaseResult) -> str:
    """The sentence a user acts on: the failed checks, or the harness's own error message
    (which already names the file, line and SQLSTATE)."""
    problems = [p for p in (*result.preflight_problems, *result.postflight_problems)]
    failing = [p for p in problems if p.status == "fail"]
    if failing:
        return "; ".join(f"{p.name}: {p.summary}" for p in failing)
    if result.error is not None:
        return result.error.message
    return "ok" if result.succeeded else "failed"


def _versions(versions: tuple[int, ...]) -> str:
    return ", ".join(map(str, versions))


def _success_summary(phase: str, result: PhaseResult) -> str:
    """What a succeeded Job did, with the versions a user looks for."""
    current = result.ledger.current_version if result.ledger else None
    at = f"at version {current}" if current is not None else "no version applied yet"
    if phase == "apply":
        done = f"applied {_versions(result.applied)}" if result.applied else "nothing to apply"
        return f"{done}; {at}"
    if phase == "rollback":
        return f"rolled back {_versions(result.rolled_back) or 'nothing'}; {at}"
    if phase == "preflight" and result.ledger is not None:
        pending = result.ledger.pending_count
        return f"passed; {at}, {pending} pending" + (
            f" ({_versions(result.ledger.pending)})" if result.ledger.pending else ""
        )
    if phase == "backup" and result.backup is not None:
        return f"backup {result.backup.path} ({result.backup.size_bytes} bytes) verified"
    if phase == "postflight":
        return f"passed; {at}, schema fingerprint {result.fingerprint or ''}"
    if phase == "plan" and result.plan is not None:
        return f"plan {result.plan.hash} of {len(result.plan.migrations)} migration(s)"
    return "succeeded"


def _warnings_of(preflight: PhaseResult) -> str:
    warned = [p.name for p in preflight.preflight_problems if p.status == "warn"]
    return f"passed with warnings: {', '.join(warned)}" if warned else "all checks passed"


def _seconds(duration: str) -> float:
    return parse_duration(duration, what="spec.preflight.retryInterval")


def _parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
