"""The phases every deployment runs, in order, on one connection holding the ledger's lock:
preflight → backup → apply → postflight. `apply` runs the first three, `run` all four; the
operator's Jobs run each phase alone with explicit flags.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from migrate_safe.backup import BackupFailed, BackupJob
from migrate_safe.catalog import table_facts
from migrate_safe.config import Settings, format_duration
from migrate_safe.engine import Engine
from migrate_safe.errors import PostflightFailed, PreflightFailed
from migrate_safe.fingerprint import fingerprint
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.lint import (
    Finding,
    LintConfig,
    Severity,
    lint_down_scripts,
    lint_migrations,
    refusal,
    relations_to_look_up,
    summary,
)
from migrate_safe.plan import LedgerState, RollbackStep
from migrate_safe.postflight import postflight
from migrate_safe.preflight import FAIL, WARN, Check, Preflight, PreflightConfig
from migrate_safe.report import Reporter, utcnow
from migrate_safe.source import Migration, Source

Body = dict[str, Any]
SYMBOL = {"pass": "✓", "warn": "!", "fail": "✗"}


@dataclass
class PhaseOptions:
    preflight: PreflightConfig = field(default_factory=PreflightConfig)
    backup_dir: Path = Path("backups/migrations")
    backup_format: str = "custom"
    retention: int = 5
    backup_lock_wait: float = 60.0
    expected_fingerprint: str | None = None
    expected_plan_hash: str | None = None
    lint: LintConfig = field(default_factory=LintConfig)


def print_checks(report: Reporter, title: str, checks: list[Check]) -> None:
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    verdict = "FAILED" if failed else "passed"
    report.result(f"{title} {verdict} ({failed} failed, {warned} warning(s))")
    width = max(len(c.name) for c in checks)
    for check in checks:
        report.result(f"  {SYMBOL[check.status]} {check.name:<{width}}  {check.summary}")


def record_fingerprint(ledger: Ledger, report: Reporter, command: str, outcome: str) -> str:
    """Remember the schema as this run left it, for the next preflight's drift check."""
    current = fingerprint(ledger.conn, ledger.schema).hash
    ledger.append_history(
        HistoryEntry(report.run_id, command, outcome, report.started_at, fingerprint=current)
    )
    return current


def lint_pending(
    ledger: Ledger, state: LedgerState, pending: list[Migration], config: LintConfig
) -> list[Finding]:
    """Lint findings for the up files that would run, knowing the schema the applied files
    built and the tables as the catalog has them now (new, empty, small or absent tables
    make findings that only bite with rows info). Down files do not run here: they are
    linted before a rollback (`lint_rollback`)."""
    applied = state.applied_versions
    history = [m for m in state.source.migrations if m.version in applied]
    tables = table_facts(ledger.conn, relations_to_look_up(m.up.text for m in pending))
    return lint_migrations(
        pending,
        pg_version=server_major(ledger.conn),
        config=config,
        history=history,
        include_down=False,
        tables=tables,
    )


def lint_rollback(
    ledger: Ledger,
    steps: list[RollbackStep],
    report: Reporter,
    body: Body,
    config: LintConfig,
    *,
    enforce: bool = True,
) -> list[Finding]:
    """Lint the down scripts a rollback is about to run, in its order, against the tables as
    they are now; refuse (exit 1, nothing rolled back) while an error remains, unless
    `enforce` is False (`rollback --force`: reported, not fatal)."""
    findings = lint_downs(ledger, steps, config)
    counts = summary(findings)
    body["lint"] = {"findings": [f.as_dict() for f in findings], "summary": counts}
    report.progress(
        f"lint of {len(steps)} down file(s): {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {counts['info']} info"
    )
    errors = [f for f in findings if f.active and f.severity == Severity.ERROR]
    if errors and not enforce:
        body["lint"]["overridden_by_force"] = True
        report.progress("warning: lint errors in the down files; continuing because of --force")
    elif errors:
        # A down stored in the ledger at apply time is what runs: editing its file changes
        # nothing, so only the settings (or --force) get past it.
        stored = {step.down.origin for step in steps if step.row.down_sql is not None}
        editable = any(f.file not in stored for f in errors)
        raise PreflightFailed(
            "rollback refused, nothing was rolled back: "
            + refusal(errors, flags="`rollback --force`", directive=editable),
            details={"lint_errors": [f.as_dict() for f in errors]},
        )
    return findings


def lint_downs(ledger: Ledger, steps: list[RollbackStep], config: LintConfig) -> list[Finding]:
    """Findings for the down scripts of a rollback, judged against the tables as they are."""
    if not steps:
        return []
    downs = [step.down for step in steps]
    tables = table_facts(ledger.conn, relations_to_look_up(d.text for d in downs))
    return lint_down_scripts(
        downs, pg_version=server_major(ledger.conn), config=config, tables=tables
    )


def server_major(conn: psycopg.Connection[Any]) -> int:
    return conn.info.server_version // 10000


def record_outcome(
    ledger: Ledger, source: Source, report: Reporter, body: Body, command: str, outcome: str
) -> None:
    """Where an apply or rollback left the ledger and the schema, read back into the report;
    the fingerprint goes into the history, so the next drift check knows this state is ours."""
    final = LedgerState(ledger.applied(), source)
    body["current_version"] = final.current_version
    body["latest_version"] = source.latest_version
    body["pending"] = [m.version for m in final.pending]
    body["missing_from_source"] = final.missing_from_source
    body["dirty"] = bool(final.dirty)
    body["dirty_versions"] = [row.version for row in final.dirty]
    body["fingerprint"] = record_fingerprint(ledger, report, command, outcome)


@contextmanager
def outcome_recorded(
    ledger: Ledger, source: Source, report: Reporter, body: Body, command: str
) -> Iterator[None]:
    """Whatever happens inside — success, a failed migration, a signal — the report ends with
    the state the ledger is really in, never the state from before the run."""
    try:
        yield
    except BaseException:
        try:
            record_outcome(ledger, source, report, body, command, "failed")
        except psycopg.Error as error:  # the server went away: say so rather than guess
            body["ledger_state"] = f"unknown: could not read the ledger after the failure ({error})"
        raise
    record_outcome(ledger, source, report, body, command, "succeeded")


def preflight_phase(
    ledger: Ledger, state: LedgerState, pending: list[Migration], settings: Settings,
    options: PhaseOptions, report: Reporter, body: Body, *, enforce: bool = True,
    target: int | None = None,
) -> list[Check]:  # fmt: skip
    findings = lint_pending(ledger, state, pending, options.lint)
    checks = Preflight(
        ledger.conn,
        ledger,
        state,
        pending,
        options.preflight,
        settings.redact,
        findings,
        target,
    ).run()
    failed = [c for c in checks if c.status == FAIL]
    body.update(
        current_version=state.current_version,
        latest_version=state.source.latest_version,
        pending=[m.version for m in pending],
        missing_from_source=state.missing_from_source,
        dirty=bool(state.dirty),
        dirty_versions=[row.version for row in state.dirty],
    )
    body["preflight"] = {
        "passed": not failed,
        "checks": [c.as_dict() for c in checks],
    }
    report.event("preflight_finished", passed=not failed, failed=[c.name for c in failed])
    print_checks(report, "preflight", checks)
    if failed and enforce:
        names = ", ".join(c.name for c in failed)
        raise PreflightFailed(
            f"preflight failed: {names}: " + "; ".join(c.summary for c in failed),
            details={"failed_checks": [c.name for c in failed]},
        )
    if failed:
        body["preflight"]["overridden_by_force"] = True
        report.progress("warning: preflight failed; continuing because of --force")
    return checks


def backup_phase(
    ledger: Ledger, state: LedgerState, settings: Settings, options: PhaseOptions,
    report: Reporter, body: Body,
) -> None:  # fmt: skip
    job = BackupJob(
        ledger.conn, settings.require_database_url(), options.backup_dir, options.backup_format,
        options.retention, options.backup_lock_wait, settings.redact, report.run_id,
    )  # fmt: skip
    try:
        with ledger.conn.transaction():
            ledger.conn.execute(
                "SELECT set_config('lock_timeout', %s, true)",
                [format_duration(options.backup_lock_wait)],
            )
            current = fingerprint(ledger.conn, ledger.schema).hash
    except psycopg.errors.LockNotAvailable:
        raise BackupFailed(
            f"backup: a table stayed locked by another session for "
            f"{options.backup_lock_wait:g}s (--backup-lock-wait); nothing was applied"
        ) from None
    manifest = job.run(state.current_version, current)
    path = options.backup_dir / manifest.file
    body["backup"] = {"path": str(path), **manifest.as_dict()}
    report.event("backup_finished", path=str(path), size_bytes=manifest.size_bytes)
    report.progress(
        f"backup {path} ({manifest.size_bytes} bytes, {manifest.duration_ms} ms, "
        f"sha256 {manifest.sha256[:12]}, verified)"
    )


def apply_phase(
    ledger: Ledger, pending: list[Migration], source: Source, settings: Settings,
    report: Reporter, body: Body,
) -> None:  # fmt: skip
    ledger.ensure()
    report.progress(f"apply: {len(pending)} pending")
    applied = body.setdefault("applied", [])
    engine = Engine(ledger.conn, ledger, settings.policy, report)
    with outcome_recorded(ledger, source, report, body, "apply"):
        for migration in pending:
            applied.append(engine.apply(migration).__dict__)
    current = body["current_version"]
    report.progress(
        f"applied {len(applied)} migration(s); current version {current or 'none (empty)'}"
    )


def postflight_phase(
    ledger: Ledger, source: Source, target: int | None, options: PhaseOptions,
    report: Reporter, body: Body,
) -> None:  # fmt: skip
    state = LedgerState(ledger.applied(), source)
    checks, current = postflight(ledger.conn, ledger, state, target, options.expected_fingerprint)
    failed = [c for c in checks if c.status == FAIL]
    outcome = "failed" if failed else "passed"
    ledger.append_history(
        HistoryEntry(report.run_id, "postflight", outcome, utcnow(), fingerprint=current.hash)
    )
    body["postflight"] = {"passed": not failed, "checks": [c.as_dict() for c in checks]}
    body["fingerprint"] = current.hash
    report.event("postflight_finished", passed=not failed, fingerprint=current.hash)
    print_checks(report, "postflight", checks)
    if failed:
        raise PostflightFailed(
            "postflight failed: " + "; ".join(f"{c.name}: {c.summary}" for c in failed),
            details={"failed_checks": [c.name for c in failed]},
        )
