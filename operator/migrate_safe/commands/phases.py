"""The phases every deployment runs, in order, on one connection holding the ledger's lock:
preflight → backup → apply → postflight. `apply` runs the first three, `run` all four; the
operator's Jobs run each phase alone with explicit flags.

Each phase puts its typed result into the run's report as soon as it has one, before it
decides whether the run may go on, so a refused or failed run reports what it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from migrate_safe.backup import BackupFailed, BackupJob
from migrate_safe.catalog import table_facts
from migrate_safe.commands import text
from migrate_safe.config import Settings
from migrate_safe.engine import Engine
from migrate_safe.errors import PostflightFailed, PreflightFailed
from migrate_safe.fingerprint import schema_hash
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.lint import Finding, LintConfig, Severity
from migrate_safe.options import PhaseOptions
from migrate_safe.outcome import (
    BackupTaken,
    CheckReport,
    LedgerOutcome,
    LintReport,
    RunReport,
)
from migrate_safe.plan import LedgerState, RollbackStep
from migrate_safe.postflight import postflight
from migrate_safe.preflight import Preflight
from migrate_safe.report import Reporter, utcnow
from migrate_safe.scanner import Migration
from migrate_safe.session import local_timeouts
from migrate_safe.source import Source


def server_major(conn: psycopg.Connection[Any]) -> int:
    return conn.info.server_version // 10000


def record_fingerprint(ledger: Ledger, report: Reporter, command: str, outcome: str) -> str:
    """Remember the schema as this run left it, for the next preflight's drift check."""
    current = schema_hash(ledger.conn, ledger.schema)
    ledger.append_history(
        HistoryEntry(report.run_id, command, outcome, report.started_at, fingerprint=current)
    )
    return current


# --- lint before running ----------------------------------------------------------------------


def lint_pending(
    ledger: Ledger, state: LedgerState, pending: list[Migration], config: LintConfig
) -> list[Finding]:
    """Lint findings for the up files that would run, knowing the schema the applied files
    built and the tables as the catalog has them now (new, empty, small or absent tables
    make findings that only bite with rows info). Down files do not run here: they are
    linted before a rollback (`lint_rollback`)."""
    # The runner loads every rule: imported when a run lints, not when it starts.
    from migrate_safe.lint import lint_migrations, relations_to_look_up

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


def lint_downs(ledger: Ledger, steps: list[RollbackStep], config: LintConfig) -> list[Finding]:
    """Findings for the down scripts of a rollback, judged against the tables as they are."""
    if not steps:
        return []
    from migrate_safe.lint import lint_down_scripts, relations_to_look_up

    downs = [step.down for step in steps]
    tables = table_facts(ledger.conn, relations_to_look_up(d.text for d in downs))
    return lint_down_scripts(
        downs, pg_version=server_major(ledger.conn), config=config, tables=tables
    )


def lint_rollback(
    ledger: Ledger,
    steps: list[RollbackStep],
    report: Reporter,
    run: RunReport,
    config: LintConfig,
    *,
    enforce: bool = True,
) -> None:
    """Lint the down scripts a rollback is about to run, in its order, against the tables as
    they are now; refuse (exit 1, nothing rolled back) while an error remains, unless
    `enforce` is False (`rollback --force`: reported, not fatal)."""
    from migrate_safe.lint import refusal, summary

    findings = lint_downs(ledger, steps, config)
    run.lint = LintReport(findings)
    counts = summary(findings)
    report.progress(
        f"lint of {len(steps)} down file(s): {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {counts['info']} info"
    )
    errors = [f for f in findings if f.active and f.severity == Severity.ERROR]
    if errors and not enforce:
        run.lint.overridden_by_force = True
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


# --- where a run left the ledger --------------------------------------------------------------


def record_outcome(
    ledger: Ledger, source: Source, report: Reporter, run: RunReport, command: str, outcome: str
) -> None:
    """Where an apply or rollback left the ledger and the schema, read back into the report;
    the fingerprint goes into the history, so the next drift check knows this state is ours."""
    run.ledger = LedgerOutcome.of(LedgerState(ledger.applied(), source))
    run.fingerprint = record_fingerprint(ledger, report, command, outcome)


@contextmanager
def outcome_recorded(
    ledger: Ledger, source: Source, report: Reporter, run: RunReport, command: str
) -> Iterator[None]:
    """Whatever happens inside — success, a failed migration, a signal — the report ends with
    the state the ledger is really in, never the state from before the run."""
    try:
        yield
    except BaseException:
        try:
            record_outcome(ledger, source, report, run, command, "failed")
        except psycopg.Error as error:  # the server went away: say so rather than guess
            run.ledger_state = f"unknown: could not read the ledger after the failure ({error})"
        raise
    record_outcome(ledger, source, report, run, command, "succeeded")


# --- the phases --------------------------------------------------------------------------------


def preflight_phase(
    ledger: Ledger,
    state: LedgerState,
    pending: list[Migration],
    settings: Settings,
    options: PhaseOptions,
    report: Reporter,
    run: RunReport,
    *,
    enforce: bool = True,
    target: int | None = None,
) -> CheckReport:
    """The checks, in the report before the verdict; a failure refuses the run unless
    `enforce` is False (--force: reported, not fatal)."""
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
    run.ledger = LedgerOutcome.of(state, pending=[m.version for m in pending])
    verdict = run.preflight = CheckReport(checks)
    failed = verdict.failed
    report.event("preflight_finished", passed=verdict.passed, failed=[c.name for c in failed])
    for line in text.checks("preflight", verdict):
        report.result(line)
    if failed and enforce:
        names = ", ".join(c.name for c in failed)
        raise PreflightFailed(
            f"preflight failed: {names}: " + "; ".join(c.summary for c in failed),
            details={"failed_checks": [c.name for c in failed]},
        )
    if failed:
        verdict.overridden_by_force = True
        report.progress("warning: preflight failed; continuing because of --force")
    return verdict


def backup_phase(
    ledger: Ledger,
    state: LedgerState,
    settings: Settings,
    options: PhaseOptions,
    report: Reporter,
    run: RunReport,
) -> BackupTaken:
    job = BackupJob(
        ledger.conn,
        settings.require_database_url(),
        options.backup_dir,
        options.backup_format,
        options.retention,
        options.backup_lock_wait,
        settings.redact,
        report.run_id,
    )
    try:
        with local_timeouts(ledger.conn, lock_timeout=options.backup_lock_wait):
            current = schema_hash(ledger.conn, ledger.schema)
    except psycopg.errors.LockNotAvailable:
        raise BackupFailed(
            f"backup: a table stayed locked by another session for "
            f"{options.backup_lock_wait:g}s (--backup-lock-wait); nothing was applied"
        ) from None
    manifest = job.run(state.current_version, current)
    path = options.backup_dir / manifest.file
    taken = run.backup = BackupTaken(str(path), manifest)
    report.event("backup_finished", path=str(path), size_bytes=manifest.size_bytes)
    report.progress(
        f"backup {path} ({manifest.size_bytes} bytes, {manifest.duration_ms} ms, "
        f"sha256 {manifest.sha256[:12]}, verified)"
    )
    return taken


def apply_phase(
    ledger: Ledger,
    pending: list[Migration],
    source: Source,
    settings: Settings,
    report: Reporter,
    run: RunReport,
) -> None:
    """Each pending migration, in order; the report lists every one applied before a failure
    and where the ledger stands after it."""
    ledger.ensure()
    report.progress(f"apply: {len(pending)} pending")
    applied = run.applied = []
    engine = Engine(ledger.conn, ledger, settings.policy, report)
    with outcome_recorded(ledger, source, report, run, "apply"):
        for migration in pending:
            applied.append(engine.apply(migration))
    current = run.ledger.current_version if run.ledger else None
    report.progress(
        f"applied {len(applied)} migration(s); current version {current or 'none (empty)'}"
    )


def postflight_phase(
    ledger: Ledger,
    source: Source,
    target: int | None,
    options: PhaseOptions,
    report: Reporter,
    run: RunReport,
) -> CheckReport:
    state = LedgerState(ledger.applied(), source)
    checks, current = postflight(ledger.conn, ledger, state, target, options.expected_fingerprint)
    verdict = run.postflight = CheckReport(checks)
    run.fingerprint = current.hash
    outcome = "passed" if verdict.passed else "failed"
    ledger.append_history(
        HistoryEntry(report.run_id, "postflight", outcome, utcnow(), fingerprint=current.hash)
    )
    report.event("postflight_finished", passed=verdict.passed, fingerprint=current.hash)
    for line in text.checks("postflight", verdict):
        report.result(line)
    if not verdict.passed:
        raise PostflightFailed(
            "postflight failed: " + "; ".join(f"{c.name}: {c.summary}" for c in verdict.failed),
            details={"failed_checks": [c.name for c in verdict.failed]},
        )
    return verdict
