"""The reconcile state machine, pure: (spec, status, observed Jobs) → new status, the Job to
launch, events. No Kubernetes calls here; handlers.py executes what this decides.

For each spec generation: preflight → [plan → approval] → [backup] → apply → [postflight], or,
when the spec asks for an older state (a lower targetVersion, or a source that lost applied
versions), preflight → [backup] → rollback → [postflight], as rollback.policy allows.
Preflight failures caused by other sessions (long transactions, lock waits) are retried; the
others, and any failure of a later phase, stall the generation until the spec changes.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrate_safe.config import parse_duration
from migrate_safe.k8s import conditions as c

Status = dict[str, Any]
Spec = dict[str, Any]

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
HISTORY_LIMIT = 20
RUNNING_REQUEUE = 2.0

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
    result: dict[str, Any] | None = None  # the harness's termination message
    message: str = ""  # why a Job failed without a result (deadline, crash)
    waiting: str | None = None  # a pod that cannot start: missing Secret or ConfigMap
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


@dataclass(frozen=True)
class World:
    name: str
    namespace: str
    generation: int
    spec: Spec
    status: Status
    jobs: dict[str, JobView]
    now: datetime
    # ConfigMaps of the source found missing when a Job was about to be launched.
    missing_sources: tuple[str, ...] = ()


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


def job_name(name: str, generation: int, phase: str, attempt: int) -> str:
    """Deterministic, ≤ 63 characters: a restarted operator finds the Job it started."""
    suffix = f"-g{generation}-{phase}" + (f"-{attempt}" if attempt > 1 else "")
    if len(name) + len(suffix) <= 63:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: 63 - len(suffix) - 9]}-{digest}{suffix}"


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """One pass over one resource. Methods mutate self.status, then decide() returns it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.spec = world.spec
        self.now = _timestamp(world.now)
        self.status: Status = copy.deepcopy(world.status)
        self.decision = Decision(self.status)

    # --- entry point ---------------------------------------------------------------------

    def decide(self) -> Decision:
        if self.status.get("observedGeneration") != self.world.generation:
            self._start_generation()
        self._adopt_orphan_jobs()
        self._record_finished_jobs()
        running = self._running_job()
        if running is not None:
            self._in_progress_of(running)
        else:
            self._next_step()
        self.decision.status = self.status
        return self.decision

    # --- bookkeeping -----------------------------------------------------------------------

    def _start_generation(self) -> None:
        """A new spec: forget the last generation's Jobs and results, keep what is known of
        the database (version, backup, fingerprint) and the history."""
        for key in ("jobs", "attempts", "results", "plan"):
            self.status.pop(key, None)
        self.status["observedGeneration"] = self.world.generation
        self.status.setdefault("conditions", [])
        self.status["targetVersion"] = self.spec.get("targetVersion")
        for kind in (
            c.PREFLIGHT_PASSED,
            c.BACKED_UP,
            c.APPLIED,
            c.POSTFLIGHT_PASSED,
            c.ROLLED_BACK,
        ):
            self.status["conditions"] = [
                cond for cond in self.status["conditions"] if cond["type"] != kind
            ]
        self._progress("Pending", "NewGeneration", f"generation {self.world.generation} observed")
        self._event(
            "Normal", "GenerationObserved", f"reconciling generation {self.world.generation}"
        )

    def _jobs(self) -> dict[str, str]:
        return self.status.setdefault("jobs", {})  # type: ignore[no-any-return]

    def _results(self) -> dict[str, dict[str, Any]]:
        return self.status.setdefault("results", {})  # type: ignore[no-any-return]

    def _attempt(self, phase: str) -> int:
        return int(self.status.get("attempts", {}).get(phase, 0))

    def _adopt_orphan_jobs(self) -> None:
        """A Job of this generation that status does not name: the operator died between
        creating it and recording it. Adopt the newest attempt instead of starting another."""
        for job in sorted(self.world.jobs.values(), key=lambda j: j.attempt):
            if job.generation != self.world.generation:
                continue
            known = self._jobs().get(job.phase)
            if known is None or (known != job.name and job.attempt > self._attempt(job.phase)):
                self._jobs()[job.phase] = job.name
                self.status.setdefault("attempts", {})[job.phase] = job.attempt
                self._results().pop(job.phase, None)

    def _record_finished_jobs(self) -> None:
        for phase, name in list(self._jobs().items()):
            job = self.world.jobs.get(name)
            if job is None or not job.finished or phase in self._results():
                continue
            self._results()[phase] = _compact_result(job)
            self.decision.finished.append(job)
            self._absorb(job)
            history = self.status.setdefault("history", [])
            history.append(
                {
                    "generation": job.generation,
                    "phase": phase,
                    "job": job.name,
                    "outcome": job.state,
                    "exitCode": (job.result or {}).get("exit_code", -1),
                    "message": _job_message(job)[:500],
                    "startedAt": job.started_at or "",
                    "finishedAt": job.finished_at or self.now,
                }
            )
            del history[:-HISTORY_LIMIT]
            kind = "Normal" if job.state == "succeeded" else "Warning"
            verb = "succeeded" if job.state == "succeeded" else "failed"
            self._event(
                kind,
                f"{phase.capitalize()}{verb.capitalize()}",
                f"{phase} Job {job.name} {verb}: {_job_message(job)}"[:1024],
            )

    def _absorb(self, job: JobView) -> None:
        """Copy what a finished Job learned about the database into status."""
        result = job.result or {}
        for key, field_name in (
            ("current_version", "currentVersion"),
            ("fingerprint", "fingerprint"),
        ):
            if key in result:
                self.status[field_name] = result[key]
        if "pending" in result and job.phase == "preflight":
            self.status["pending"] = result["pending"]
        if job.phase in ("apply", "rollback") and job.state == "succeeded":
            self.status["pending"] = [] if job.phase == "apply" else self.status.get("pending", [])
        if job.phase == "backup" and job.state == "succeeded" and "backup" in result:
            backup = result["backup"]
            self.status["lastBackup"] = {
                "path": backup.get("path") or "",
                "sizeBytes": backup.get("size_bytes") or 0,
                "sha256": backup.get("sha256") or "",
                "time": backup.get("created_at") or self.now,
            }
        if job.phase == "plan" and "plan" in result:
            self.status["plan"] = {**result["plan"], "generation": self.world.generation}

    def _running_job(self) -> JobView | None:
        for phase, name in self._jobs().items():
            if phase in self._results():
                continue
            job = self.world.jobs.get(name)
            # A Job just created may not be visible yet: keep waiting for it.
            return job or JobView(
                name, phase, self.world.generation, self._attempt(phase), "running"
            )
        return None

    # --- in progress ---------------------------------------------------------------------

    def _in_progress_of(self, job: JobView) -> None:
        phase_name, reason = RUNNING[job.phase]
        if job.waiting:
            # The pod cannot start (a Secret or ConfigMap is missing): nothing progresses
            # until someone creates it, then the kubelet retries by itself.
            self._stall(
                "ConfigNotFound",
                f"{job.phase} Job {job.name} cannot start: {job.waiting}",
                phase="Waiting",
            )
            self.decision.requeue_after = RUNNING_REQUEUE
            return
        self._progress(phase_name, reason, f"{job.phase} Job {job.name} is running")
        kind = PHASE_CONDITION.get(job.phase)
        if kind:
            self._condition(kind, c.UNKNOWN, reason, f"Job {job.name} is running")
        self.decision.requeue_after = RUNNING_REQUEUE

    # --- the next step -------------------------------------------------------------------

    def _next_step(self) -> None:
        preflight = self._results().get("preflight")
        if preflight is None:
            self._launch("preflight")
            return
        if not _succeeded(preflight):
            self._after_failed_preflight(preflight)
            return
        self._condition(c.PREFLIGHT_PASSED, c.TRUE, "PreflightPassed", _warnings_of(preflight))
        route, to_version = _route(self.spec, preflight)
        if route == "down":
            self._roll_back(to_version, preflight)
        elif route == "up":
            self._roll_forward()
        else:
            self._condition(c.APPLIED, c.TRUE, "UpToDate", "nothing to apply")
            self._finish_with_postflight(self.spec.get("targetVersion"), "Migrated")

    def _after_failed_preflight(self, preflight: dict[str, Any]) -> None:
        failed = [
            p["name"] for p in preflight.get("preflight_problems", []) if p["status"] == "fail"
        ]
        message = _job_message_from(preflight)
        if failed and set(failed) <= TRANSIENT_CHECKS:
            self._condition(c.PREFLIGHT_PASSED, c.FALSE, "PreflightBlocked", message)
            wait = _seconds(self.spec.get("preflight", {}).get("retryInterval", "30s"))
            finished = preflight.get("finishedAt")
            elapsed = (self.world.now - _parse(finished)).total_seconds() if finished else wait
            if elapsed >= wait:
                self._results().pop("preflight")
                self._launch("preflight")
                return
            self._progress(
                "Waiting", "PreflightBlocked", f"{message}; retrying in {wait - elapsed:.0f}s"
            )
            self.decision.requeue_after = max(1.0, wait - elapsed)
            return
        self._condition(c.PREFLIGHT_PASSED, c.FALSE, "PreflightFailed", message)
        self._stall("PreflightFailed", message)

    def _roll_forward(self) -> None:
        approval = (self.spec.get("approval") or {}).get("planHash") or ""
        if self.spec.get("mode") == "Plan" or approval:
            plan = self._phase_result("plan")
            if plan is None:
                return
            published = self.status.get("plan", {}).get("hash", "")
            if self.spec.get("mode") == "Plan":
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
                    f"plan {published} awaits approval: set spec.approval.planHash to it",
                )
                return
        if not self._backup_done():
            return
        if self._phase_result("apply") is None:
            return
        self._condition(
            c.APPLIED,
            c.TRUE,
            "Applied",
            f"applied up to version {self.status.get('currentVersion')}",
        )
        self._finish_with_postflight(self.spec.get("targetVersion"), "Migrated")

    def _roll_back(self, to_version: int, preflight: dict[str, Any]) -> None:
        rollback = self.spec.get("rollback") or {}
        policy = rollback.get("policy", "Manual")
        what = _rollback_summary(preflight, to_version)
        if policy == "Never":
            self._condition(c.ROLLED_BACK, c.FALSE, "RollbackForbidden", what)
            self._stall(
                "RollbackForbidden", f"the spec asks to {what}, but spec.rollback.policy is Never"
            )
            return
        if policy == "Manual" and rollback.get("approvedTargetVersion") != to_version:
            message = (
                f"would {what}; approve with spec.rollback.approvedTargetVersion: "
                f"{to_version} (or spec.rollback.policy: Auto)"
            )
            self._condition(c.ROLLED_BACK, c.FALSE, "RollbackAwaitingApproval", message)
            self._progress("AwaitingApproval", "RollbackAwaitingApproval", message)
            return
        if not self._backup_done():
            return
        result = self._phase_result("rollback", {"to": to_version}, stall=False)
        if result is None:
            return
        if not _succeeded(result):
            self._after_failed_rollback(result)
            return
        self.decision.events.append(Event("Normal", "RolledBack", what))
        self._condition(c.ROLLED_BACK, c.TRUE, "RolledBack", what)
        self._finish_with_postflight(to_version, "RolledBack")

    def _after_failed_rollback(self, result: dict[str, Any]) -> None:
        message = _job_message_from(result)
        self._condition(c.ROLLED_BACK, c.FALSE, "RollbackFailed", message)
        restore = (self.spec.get("rollback") or {}).get("restoreBackupOnFailure")
        backed_up = _succeeded(self._results().get("backup") or {})
        if restore and backed_up:
            restored = self._phase_result("restore")
            if restored is None:
                return
            self._stall("RollbackFailed", f"{message}; the backup taken before it was restored")
            return
        self._stall("RollbackFailed", message)

    def _backup_done(self) -> bool:
        backup = self.spec.get("backup") or {}
        if not backup.get("enabled"):
            self._condition(c.BACKED_UP, c.FALSE, "BackupDisabled", "spec.backup.enabled is false")
            return True
        result = self._phase_result("backup")
        if result is None:
            return False
        size = (result.get("backup") or {}).get("size_bytes")
        self._condition(c.BACKED_UP, c.TRUE, "BackedUp", f"verified backup of {size} bytes")
        return True

    def _finish_with_postflight(self, target: int | None, reason: str) -> None:
        if (self.spec.get("postflight") or {}).get("enabled", True):
            result = self._phase_result("postflight", {"to": target})
            if result is None:
                return
            self._condition(
                c.POSTFLIGHT_PASSED,
                c.TRUE,
                "PostflightPassed",
                f"schema fingerprint {result.get('fingerprint', '')}",
            )
        version = self.status.get("currentVersion")
        self._done(reason, f"at version {version}", phase="Succeeded")

    def _phase_result(
        self, phase: str, options: dict[str, Any] | None = None, *, stall: bool = True
    ) -> dict[str, Any] | None:
        """The phase's result when it succeeded; None when it is launched now or failed
        (then the generation stalls, unless the caller handles the failure itself)."""
        result = self._results().get(phase)
        if result is None:
            self._launch(phase, options or {})
            return None
        if _succeeded(result) or not stall:
            return result
        message = _job_message_from(result)
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
        attempt = self._attempt(phase) + 1
        name = job_name(self.world.name, self.world.generation, phase, attempt)
        self.status.setdefault("attempts", {})[phase] = attempt
        self._jobs()[phase] = name
        launch_options = dict(options or {})
        approval = (self.spec.get("approval") or {}).get("planHash")
        if phase == "apply" and approval:
            launch_options["expect_plan_hash"] = approval
        self.decision.launch = Launch(phase, attempt, name, launch_options)
        phase_name, reason = RUNNING[phase]
        self._progress(phase_name, reason, f"starting {phase} Job {name}")
        self._event("Normal", f"{phase.capitalize()}Started", f"created Job {name}")
        self.decision.requeue_after = RUNNING_REQUEUE

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
        """Cannot progress without a change: Stalled=True (and Reconciling=False, which kstatus
        reads first), so Flux and Argo CD fail fast. Causes that a person fixes outside the
        spec (a missing Secret) still recover: every pass looks again."""
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
        self.decision.events.append(Event(kind, reason, message))


def decide(world: World) -> Decision:
    return Reconciler(world).decide()


# --- pure helpers ------------------------------------------------------------------------------


def _route(spec: Spec, preflight: dict[str, Any]) -> tuple[str, int]:
    """up, down (with the version to roll back to) or none, from what preflight saw."""
    current = preflight.get("current_version")
    latest = preflight.get("latest_version")
    target = spec.get("targetVersion", latest)
    missing = preflight.get("missing_from_source") or []
    candidates = []
    if missing:
        candidates.append(min(missing) - 1)
    if current is not None and target is not None and target < current:
        candidates.append(target)
    if candidates:
        return "down", max(0, min(candidates))
    if preflight.get("pending"):
        return "up", target or 0
    return "none", current or 0


def _rollback_summary(preflight: dict[str, Any], to_version: int) -> str:
    current = preflight.get("current_version") or 0
    missing = preflight.get("missing_from_source") or []
    gone = f" (versions {', '.join(map(str, missing))} left the source)" if missing else ""
    return f"roll back from version {current} to {to_version}{gone}"


def _succeeded(result: dict[str, Any]) -> bool:
    return bool(result.get("outcome") == "succeeded" and result.get("exit_code", 0) == 0)


def _compact_result(job: JobView) -> dict[str, Any]:
    result = dict(job.result or {})
    if not result:
        # No termination message: a crash, or a pod deleted before its result was read.
        # Either way nothing is known of the database, so it cannot count as a success.
        message = job.message or "the Job's pod left no result (termination message)"
        result = {"outcome": "failed", "exit_code": -1, "error": {"message": message}}
    result.setdefault("outcome", "succeeded" if job.state == "succeeded" else "failed")
    result["job"] = job.name
    result["finishedAt"] = job.finished_at or ""
    return result


def _job_message(job: JobView) -> str:
    return _job_message_from(job.result or {"error": {"message": job.message}})


def _job_message_from(result: dict[str, Any]) -> str:
    """The sentence a user acts on: the failed checks, the PostgreSQL error with its file."""
    problems = [p for p in result.get("preflight_problems", []) if p["status"] == "fail"]
    problems += [p for p in result.get("postflight_problems", []) if p["status"] == "fail"]
    if problems:
        return "; ".join(f"{p['name']}: {p['summary']}" for p in problems)
    error = result.get("error")
    if error:
        where = f" ({error['file']}:{error['line']})" if "file" in error else ""
        state = f" [SQLSTATE {error['sqlstate']}]" if error.get("sqlstate") else ""
        return f"{error.get('message', '')}{where}{state}"
    return "ok" if _succeeded(result) else "failed"


def _warnings_of(preflight: dict[str, Any]) -> str:
    warned = [p["name"] for p in preflight.get("preflight_problems", []) if p["status"] == "warn"]
    return f"passed with warnings: {', '.join(warned)}" if warned else "all checks passed"


def _seconds(duration: str) -> float:
    return parse_duration(duration, what="spec.preflight.retryInterval")


def _parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
