"""The phases every deployment runs, in order, on one connection holding the ledger's lock:
preflight → backup → apply → postflight. `apply` runs the first three, `run` all four; the
operator's Jobs run each phase alone with explicit flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from migrate_safe.backup import BackupFailed, BackupJob
from migrate_safe.config import Settings, format_duration
from migrate_safe.engine import Engine
from migrate_safe.errors import PostflightFailed, PreflightFailed
from migrate_safe.fingerprint import fingerprint
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.lint import Finding, LintConfig, lint_migrations
from migrate_safe.plan import LedgerState
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
    """Lint findings for what would run, knowing the schema the applied files built."""
    applied = state.applied_versions
    history = [m for m in state.source.migrations if m.version in applied]
    return lint_migrations(
        pending, pg_version=server_major(ledger.conn), config=config, history=history
    )


def server_major(conn: psycopg.Connection[Any]) -> int:
    return conn.info.server_version // 10000


def record_outcome(
    ledger: Ledger, source: Source, report: Reporter, body: Body, command: str
) -> LedgerState:
    """Where a successful apply or rollback left the ledger and the schema, into the report."""
    final = LedgerState(ledger.applied(), source)
    body["current_version"] = final.current_version
    body["pending"] = [m.version for m in final.pending]
    body["fingerprint"] = record_fingerprint(ledger, report, command, "succeeded")
    return final


def preflight_phase(
    ledger: Ledger, state: LedgerState, pending: list[Migration], settings: Settings,
    options: PhaseOptions, report: Reporter, body: Body, *, enforce: bool = True,
) -> list[Check]:  # fmt: skip
    findings = lint_pending(ledger, state, pending, options.lint)
    checks = Preflight(
        ledger.conn, ledger, state, pending, options.preflight, settings.redact, findings
    ).run()
    failed = [c for c in checks if c.status == FAIL]
    body.update(
        current_version=state.current_version,
        latest_version=state.source.latest_version,
        pending=[m.version for m in pending],
        missing_from_source=state.missing_from_source,
        dirty=bool(state.dirty),
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
    report.progress(f"apply: {len(pending)} pending")
    applied = body.setdefault("applied", [])
    engine = Engine(ledger.conn, ledger, settings.policy, report)
    for migration in pending:
        applied.append(engine.apply(migration).__dict__)
    final = record_outcome(ledger, source, report, body, "apply")
    report.progress(f"applied {len(applied)} migration(s); current version {final.current_version}")


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
