"""What a command did, typed: the result of each phase and the report they fill.

A command's `RunReport` starts empty and each phase fills its part as it completes, so a run
that fails midway still reports what it did before the failure. `report.Reporter.finish`
renders it once: the JSON report (`to_json`, whose keys are a documented contract: see
docs/cli.md), the `run_finished` event and the termination message the operator reads
(`report.digest`). `from_json` reads a report back, for the parts a phase result is made of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from migrate_safe.backup import Manifest
from migrate_safe.fingerprint import Fingerprint, SectionDiff
from migrate_safe.ledger import AppliedRow
from migrate_safe.lint import Finding
from migrate_safe.locks import HeldLock
from migrate_safe.plan import ChecksumMismatch, LedgerState
from migrate_safe.results import (
    BackupInfo,
    CheckProblem,
    ErrorInfo,
    LedgerView,
    PhaseResult,
    PlannedMigration,
    PublishedPlan,
)

JsonObject = dict[str, object]
# One piece of a check's evidence, as it appears in the report (pids, relations, sizes, …).
Evidence = Mapping[str, object]
PASS, WARN, FAIL, NOT_RUN = "pass", "warn", "fail", "not_run"


# --- preflight and postflight -----------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    summary: str
    evidence: Sequence[Evidence] = ()

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "evidence": [dict(item) for item in self.evidence],
        }


@dataclass
class CheckReport:
    """The verdict of preflight or postflight: every check, and whether --force went past
    a failure."""

    checks: list[Check]
    overridden_by_force: bool = False

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed

    def problems(self) -> tuple[CheckProblem, ...]:
        return tuple(
            CheckProblem(c.name, c.status, c.summary[:300]) for c in self.checks if c.status != PASS
        )

    def to_json(self) -> JsonObject:
        document: JsonObject = {
            "passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
        }
        if self.overridden_by_force:
            document["overridden_by_force"] = True
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckReport:
        checks = [
            Check(c["name"], c["status"], str(c["summary"]), list(c.get("evidence", [])))
            for c in data.get("checks", [])
        ]
        return cls(checks, bool(data.get("overridden_by_force", False)))


# --- apply, rollback and the rehearsal ------------------------------------------------------


@dataclass(frozen=True)
class MigrationRun:
    """One migration applied or rolled back."""

    version: int
    name: str
    duration_ms: int
    attempts: int

    def to_json(self) -> JsonObject:
        # Written twice per migration (its event and the report): its fields are plain
        # values, so without asdict's deep copy.
        return {each.name: getattr(self, each.name) for each in fields(self)}


@dataclass(frozen=True)
class StatementError:
    """A PostgreSQL error raised by one statement of a file."""

    file: str
    line: int
    sqlstate: str | None
    message: str
    detail: str | None
    hint: str | None
    statement: str

    def to_json(self) -> JsonObject:
        return asdict(self)

    def describe(self) -> str:
        text = f"{self.file}:{self.line}: {self.message} (SQLSTATE {self.sqlstate})"
        return text + (f"\n  detail: {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class RehearsedStatement:
    line: int
    sql: str
    duration_ms: int
    locks: list[HeldLock]  # taken by this statement
    already_held: list[HeldLock]  # on relations it names, taken earlier in the rehearsal

    def to_json(self) -> JsonObject:
        return {
            "line": self.line,
            "sql": self.sql,
            "duration_ms": self.duration_ms,
            "locks": [asdict(lock) for lock in self.locks],
            "already_held": [asdict(lock) for lock in self.already_held],
        }


@dataclass
class RehearsedMigration:
    """One pending migration in a rehearsal: its statements with their locks, or why it was
    skipped, failed or could not be rehearsed."""

    version: int
    name: str
    statements: list[RehearsedStatement] | None = None  # None: not run
    skipped: str | None = None
    not_rehearsed: str | None = None
    error: StatementError | None = None

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"

    @property
    def rehearsed(self) -> bool:
        return self.statements is not None and self.not_rehearsed is None

    def locks_taken(self) -> set[HeldLock]:
        return {
            lock
            for statement in self.statements or []
            for lock in statement.locks + statement.already_held
        }

    def to_json(self) -> JsonObject:
        document: JsonObject = {"version": self.version, "name": self.name}
        if self.skipped is not None:
            document["skipped"] = self.skipped
        if self.statements is not None:
            document["statements"] = [s.to_json() for s in self.statements]
        if self.error is not None:
            document["error"] = self.error.to_json()
        if self.not_rehearsed is not None:
            document["not_rehearsed"] = self.not_rehearsed
        return document


# --- backup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupTaken:
    path: str
    manifest: Manifest

    def info(self) -> BackupInfo:
        m = self.manifest
        return BackupInfo(self.path, m.size_bytes, m.sha256, m.created_at)

    def to_json(self) -> JsonObject:
        return {"path": self.path, **self.manifest.as_dict()}


# --- the ledger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerDetails:
    """The ledger compared with the source."""

    latest_version: int | None = None
    pending: list[int] = field(default_factory=list)
    missing_from_source: list[int] = field(default_factory=list)
    dirty_versions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerOutcome:
    """Where the ledger stands, as this run read it (after the run, on failure too)."""

    current_version: int | None
    details: LedgerDetails | None = None  # None: this command did not compare with a source

    @classmethod
    def of(cls, state: LedgerState, pending: list[int] | None = None) -> LedgerOutcome:
        """`pending`: what this run considers pending, when not every pending version."""
        details = LedgerDetails(
            latest_version=state.source.latest_version,
            pending=[m.version for m in state.pending] if pending is None else pending,
            missing_from_source=state.missing_from_source,
            dirty_versions=[row.version for row in state.dirty],
        )
        return cls(state.current_version, details)

    @property
    def dirty_versions(self) -> list[int]:
        return self.details.dirty_versions if self.details else []

    def view(self) -> LedgerView:
        details = self.details or LedgerDetails()
        return LedgerView(
            current_version=self.current_version,
            latest_version=details.latest_version,
            pending_count=len(details.pending),
            pending=tuple(details.pending),
            missing_from_source=tuple(details.missing_from_source),
            dirty_versions=tuple(details.dirty_versions),
        )

    def to_json(self) -> JsonObject:
        document: JsonObject = {"current_version": self.current_version}
        if self.details is not None:
            document.update(
                latest_version=self.details.latest_version,
                pending=self.details.pending,
                missing_from_source=self.details.missing_from_source,
                dirty=bool(self.details.dirty_versions),
                dirty_versions=self.details.dirty_versions,
            )
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerOutcome | None:
        if "current_version" not in data:
            return None
        details = LedgerDetails(
            latest_version=data.get("latest_version"),
            pending=[int(v) for v in data.get("pending", [])],
            missing_from_source=list(data.get("missing_from_source", [])),
            dirty_versions=list(data.get("dirty_versions", [])),
        )
        return cls(data["current_version"], details)


# --- lint, plan, status ---------------------------------------------------------------------


@dataclass
class LintReport:
    findings: list[Finding]
    pg_version: int | None = None  # the lint command says which version it linted for
    overridden_by_force: bool = False

    def to_json(self) -> JsonObject:
        # Here, not at the top: the summary's module loads the rules, which a run without lint
        # findings (apply --skip-preflight, status) never needs.
        from migrate_safe.lint import summary

        document: JsonObject = {}
        if self.pg_version is not None:
            document["pg_version"] = self.pg_version
        document["findings"] = [f.as_dict() for f in self.findings]
        document["summary"] = summary(self.findings)
        if self.overridden_by_force:
            document["overridden_by_force"] = True
        return document


@dataclass(frozen=True)
class PlannedFile:
    """A file `plan` would run."""

    version: int
    name: str
    file: str
    checksum: str
    no_transaction: bool
    relations: list[str]

    def to_json(self) -> JsonObject:
        return asdict(self)


@dataclass(frozen=True)
class PlanListing:
    direction: str  # up | down
    migrations: list[PlannedFile]
    plan_hash: str | None = None  # up only: what `apply --expect-plan-hash` approves

    def to_json(self) -> JsonObject:
        document: JsonObject = {
            "direction": self.direction,
            "migrations": [m.to_json() for m in self.migrations],
        }
        _put(document, plan_hash=self.plan_hash)
        return document


@dataclass(frozen=True)
class StatusDetails:
    """What `status` shows beyond the ledger's position: every applied row and the drift."""

    applied: list[AppliedRow]
    missing_from_source: list[int]
    checksum_mismatches: list[ChecksumMismatch]
    warnings: list[str]

    @classmethod
    def of(cls, state: LedgerState) -> StatusDetails:
        return cls(
            list(state.applied),
            state.missing_from_source,
            state.checksum_mismatches,
            list(state.source.warnings),
        )

    def to_json(self) -> JsonObject:
        return {
            "applied": [
                {
                    "version": row.version,
                    "name": row.name,
                    "state": row.state,
                    "applied_at": row.applied_at.isoformat(),
                    "duration_ms": row.duration_ms,
                    "has_down": row.down_sql is not None,
                }
                for row in self.applied
            ],
            "drift": {
                "missing_from_source": self.missing_from_source,
                "checksum_mismatches": [asdict(c) for c in self.checksum_mismatches],
            },
            "warnings": self.warnings,
        }


# --- the other commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class RepairDone:
    removed_dirty: list[int]
    realigned: list[int]

    def to_json(self) -> JsonObject:
        return asdict(self)


@dataclass
class RestoreDone:
    manifest_checked: bool
    restored: str | None = None  # the backup, once restored
    matches_backup_fingerprint: bool | None = None  # None: nothing to compare with

    def to_json(self) -> JsonObject:
        document: JsonObject = {"manifest_checked": self.manifest_checked}
        if self.restored is not None:
            document["restored"] = self.restored
        if self.matches_backup_fingerprint is not None:
            document["matches_backup_fingerprint"] = self.matches_backup_fingerprint
        return document


@dataclass(frozen=True)
class SchemaDiff:
    first: str
    second: str
    differences: list[SectionDiff]

    def to_json(self) -> JsonObject:
        return {
            "first": self.first,
            "second": self.second,
            "identical": not self.differences,
            "differences": [asdict(d) for d in self.differences],
        }


@dataclass
class MigrationCheck:
    """One migration through verify's steps: rehearsal, up, down, up again."""

    version: int
    name: str
    result: str = PASS  # pass | warn | fail | not_run
    failed_step: str | None = None  # rehearsal | up | down | up again, when result is fail
    fingerprint: str | None = None  # the schema after the up: F(i), to pin in postflight
    up_ms: int = 0
    down_ms: int = 0
    locks: list[str] = field(default_factory=list)
    lint: list[JsonObject] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"

    def fail(self, step: str, problem: str) -> None:
        self.result = FAIL
        self.failed_step = self.failed_step or step
        self.problems.append(problem)


@dataclass(frozen=True)
class VerifyReport:
    setup: list[str]
    results: list[MigrationCheck]
    markdown: str

    def to_json(self) -> JsonObject:
        return {
            "setup": self.setup,
            "migrations": [asdict(r) for r in self.results],
            "not_run": [r.version for r in self.results if r.result == NOT_RUN],
            "markdown": self.markdown,
        }


@dataclass(frozen=True)
class ErrorReport:
    """Why a run failed; `details` are the error's own (file, line, SQLSTATE, …)."""

    message: str
    details: Mapping[str, object]
    transient: bool = False

    def info(self) -> ErrorInfo:
        def text(key: str) -> str | None:
            value = self.details.get(key)
            return None if value is None else str(value)

        def number(key: str) -> int | None:
            value = self.details.get(key)
            return value if isinstance(value, int) else None

        return ErrorInfo(
            message=self.message[:800],
            transient=self.transient,
            sqlstate=text("sqlstate"),
            file=text("file"),
            line=number("line"),
            version=number("version"),
        )

    def to_json(self) -> JsonObject:
        return {"message": self.message, "details": dict(self.details), "transient": self.transient}


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTarget:
    """What an apply set out to do: the version it goes to and the hash of its plan (what an
    approval approves)."""

    version: int | None
    plan_hash: str


@dataclass
class RunReport:
    """A command's report, filled as its phases complete; None: not reached (or not this
    command's). `to_json` names the JSON keys of each part."""

    database: str | None = None  # where the DSN points, never its password
    ledger_schema: str | None = None
    notes: list[str] = field(default_factory=list)
    target: RunTarget | None = None
    rehearsal: list[RehearsedMigration] | None = None
    plan: PublishedPlan | None = None  # what Plan mode publishes for approval
    planned: PlanListing | None = None  # the `plan` command's listing
    lint: LintReport | None = None
    preflight: CheckReport | None = None
    backup: BackupTaken | None = None
    applied: list[MigrationRun] | None = None
    rolled_back: list[MigrationRun] | None = None
    ledger: LedgerOutcome | None = None
    ledger_state: str | None = None  # when the ledger could not be read after a failure
    fingerprint: str | None = None
    schema: Fingerprint | None = None  # the `fingerprint` command's objects
    schema_diff: SchemaDiff | None = None
    postflight: CheckReport | None = None
    status: StatusDetails | None = None
    repair: RepairDone | None = None
    restore: RestoreDone | None = None
    verify: VerifyReport | None = None
    steps: list[tuple[str, RunReport]] = field(default_factory=list)  # the demo's commands
    error: ErrorReport | None = None

    @property
    def plan_hash(self) -> str | None:
        if self.target is not None:
            return self.target.plan_hash
        return self.planned.plan_hash if self.planned is not None else None

    def to_json(self) -> JsonObject:
        document: JsonObject = {}
        _put(document, database=self.database, ledger_schema=self.ledger_schema)
        _put(document, notes=self.notes or None)
        if self.target is not None:
            document["target_version"] = self.target.version
            document["plan_hash"] = self.target.plan_hash
        if self.rehearsal is not None:
            document["rehearsal"] = [entry.to_json() for entry in self.rehearsal]
        if self.plan is not None:
            document["plan"] = self.plan.to_json()
        for merged in (self.planned, self.ledger, self.status, self.repair, self.restore):
            if merged is not None:
                document.update(merged.to_json())
        for key, part in (("lint", self.lint), ("preflight", self.preflight)):
            if part is not None:
                document[key] = part.to_json()
        if self.backup is not None:
            document["backup"] = self.backup.to_json()
        if self.applied is not None:
            document["applied"] = [m.to_json() for m in self.applied]
        if self.rolled_back is not None:
            document["rolled_back"] = [m.to_json() for m in self.rolled_back]
        _put(document, ledger_state=self.ledger_state, fingerprint=self.fingerprint)
        if self.schema is not None:
            document.update(self.schema.as_dict())
        for merged_part in (self.schema_diff, self.verify):
            if merged_part is not None:
                document.update(merged_part.to_json())
        if self.postflight is not None:
            document["postflight"] = self.postflight.to_json()
        for title, step in self.steps:
            document[title] = step.to_json()
        if self.error is not None:
            document["error"] = self.error.to_json()
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunReport:
        """A report read back from its JSON: the parts a phase result is made of."""
        error = data.get("error")
        plan_hash = data.get("plan_hash")
        return cls(
            target=RunTarget(data.get("target_version"), plan_hash) if plan_hash else None,
            ledger=LedgerOutcome.from_json(data),
            fingerprint=data.get("fingerprint"),
            applied=_runs(data.get("applied")),
            rolled_back=_runs(data.get("rolled_back")),
            preflight=CheckReport.from_json(data["preflight"]) if "preflight" in data else None,
            postflight=CheckReport.from_json(data["postflight"]) if "postflight" in data else None,
            backup=_backup(data.get("backup")),
            plan=_published_plan(data.get("plan")),
            error=_error(error) if error else None,
        )


def _put(document: JsonObject, **values: object) -> None:
    """Set the keys whose value is not None."""
    document.update((key, value) for key, value in values.items() if value is not None)


def _error(error: Mapping[str, Any]) -> ErrorReport:
    details = error.get("details") or {}
    return ErrorReport(str(error.get("message", "")), dict(details), bool(error.get("transient")))


def _published_plan(plan: Mapping[str, Any] | None) -> PublishedPlan | None:
    if not plan:
        return None
    migrations = tuple(
        PlannedMigration(m["version"], m["name"], m["noTransaction"], tuple(m["locks"]))
        for m in plan["migrations"]
    )
    return PublishedPlan(plan["hash"], plan["direction"], migrations, dict(plan["lint"]))


def _runs(entries: list[Mapping[str, Any]] | None) -> list[MigrationRun] | None:
    if entries is None:
        return None
    return [
        MigrationRun(e["version"], e.get("name", ""), e.get("duration_ms", 0), e.get("attempts", 1))
        for e in entries
    ]


def _backup(backup: Mapping[str, Any] | None) -> BackupTaken | None:
    if not backup:
        return None

    def text(key: str) -> str:
        return str(backup.get(key) or "")

    manifest = Manifest(
        file=text("file"),
        format=text("format"),
        database=text("database"),
        server_version=text("server_version"),
        ledger_version=backup.get("ledger_version"),
        size_bytes=int(backup.get("size_bytes") or 0),
        sha256=text("sha256"),
        duration_ms=int(backup.get("duration_ms") or 0),
        created_at=text("created_at"),
        wal_lsn=backup.get("wal_lsn"),
        restore_point=backup.get("restore_point"),
        pg_dump_version=text("pg_dump_version"),
        fingerprint=backup.get("fingerprint"),
        sequence=int(backup.get("sequence") or 0),
    )
    return BackupTaken(text("path"), manifest)


# --- the finished run -------------------------------------------------------------------------


@dataclass(frozen=True)
class FinishedRun:
    """A run as its JSON report, its `run_finished` event and its termination message say."""

    command: str
    run_id: str
    outcome: str  # succeeded | failed | interrupted
    exit_code: int
    started_at: datetime
    finished_at: datetime
    report: RunReport

    def to_json(self) -> JsonObject:
        return {
            "command": self.command,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_ms": round((self.finished_at - self.started_at).total_seconds() * 1000),
            **self.report.to_json(),
        }

    def result(self) -> PhaseResult:
        """What the operator needs to decide its next step (results.PhaseResult)."""
        report = self.report
        return PhaseResult(
            command=self.command,
            outcome=self.outcome,
            exit_code=self.exit_code,
            run_id=self.run_id,
            ledger=report.ledger.view() if report.ledger else None,
            fingerprint=report.fingerprint,
            plan_hash=report.plan_hash,
            applied=tuple(m.version for m in report.applied or ()),
            rolled_back=tuple(m.version for m in report.rolled_back or ()),
            preflight_problems=report.preflight.problems() if report.preflight else (),
            postflight_problems=report.postflight.problems() if report.postflight else (),
            backup=report.backup.info() if report.backup else None,
            plan=report.plan,
            error=report.error.info() if report.error else None,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FinishedRun:
        """A run read back from its JSON report (or a hand-written one: missing times are the
        epoch)."""
        epoch = datetime.fromtimestamp(0).astimezone()
        return cls(
            command=str(data["command"]),
            run_id=str(data.get("run_id", "")),
            outcome=str(data["outcome"]),
            exit_code=int(data["exit_code"]),
            started_at=_time(data.get("started_at")) or epoch,
            finished_at=_time(data.get("finished_at")) or epoch,
            report=RunReport.from_json(data),
        )


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
