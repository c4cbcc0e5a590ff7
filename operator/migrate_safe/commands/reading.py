"""status, plan and fingerprint: commands that read the ledger and the schema, and change
nothing."""

from __future__ import annotations

from migrate_safe.commands import text
from migrate_safe.commands.common import describe, load
from migrate_safe.commands.phases import lint_downs, lint_pending
from migrate_safe.config import Settings
from migrate_safe.errors import MigrationFailed
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint
from migrate_safe.ledger import Ledger
from migrate_safe.lint import Finding
from migrate_safe.options import FingerprintOptions, PlanOptions, lint_config
from migrate_safe.outcome import (
    LedgerOutcome,
    LintReport,
    PlanListing,
    PlannedFile,
    RunReport,
    SchemaDiff,
    StatusDetails,
)
from migrate_safe.plan import LedgerState, plan_hash
from migrate_safe.report import Reporter
from migrate_safe.scanner import Script
from migrate_safe.session import connect


def status(
    settings: Settings, report: Reporter, run: RunReport, *, table: bool | None = None
) -> None:
    """`table`: print the table of versions (default: unless the report goes out as JSON)."""
    source = load(settings, report)
    with connect(settings, "status") as conn:
        state = LedgerState(Ledger(conn, settings.ledger_schema).applied(), source)
    describe(settings, run)
    run.ledger = LedgerOutcome.of(state)
    run.status = StatusDetails.of(state)
    if table if table is not None else not report.json_output:
        for line in text.status(state):
            report.result(line)


def plan(options: PlanOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    source = load(settings, report)
    describe(settings, run)
    lint = lint_config(options.config, allow_missing_down=settings.allow_missing_down)
    with connect(settings, "plan") as conn:
        ledger = Ledger(conn, settings.ledger_schema)
        state = LedgerState(ledger.applied(), source)
        current = state.current_version
        backwards = options.steps is not None or (
            options.target is not None and current is not None and options.target < current
        )
        findings: list[Finding]
        if backwards:
            steps = state.to_roll_back(target=options.target, steps=options.steps)
            files = [_planned(s.row.version, s.row.name, s.down) for s in steps]
            run.planned = PlanListing("down", files)
            findings = lint_downs(ledger, steps, lint)
        else:
            state.refuse_unsafe_apply()
            pending = state.to_apply(options.target)
            files = [_planned(m.version, m.name, m.up) for m in pending]
            run.planned = PlanListing("up", files, plan_hash("up", pending))
            findings = lint_pending(ledger, state, pending, lint)
    run.ledger = LedgerOutcome(current)
    run.lint = LintReport(findings)
    if not report.json_output:
        for line in text.plan(run.planned, current):
            report.result(line)
        if findings:
            from migrate_safe.lint import render  # its module loads the linter, which status skips

            report.result(render(findings, "text").rstrip("\n"))


def _planned(version: int, name: str, script: Script) -> PlannedFile:
    return PlannedFile(
        version=version,
        name=name,
        file=script.origin,
        checksum=script.checksum,
        no_transaction=script.directives.no_transaction,
        relations=sorted(str(r) for r in script.relations),
    )


def fingerprint_command(
    options: FingerprintOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    if options.diff:
        _fingerprint_diff(options.diff, settings, report, run)
        return
    with connect(settings, "fingerprint") as conn:
        current = fingerprint(conn, settings.ledger_schema)
    run.fingerprint = current.hash
    run.schema = current
    if not report.json_output:
        report.result(current.hash)


def _fingerprint_diff(
    urls: tuple[str, str], settings: Settings, report: Reporter, run: RunReport
) -> None:
    prints: list[Fingerprint] = []
    for url in urls:
        other = Settings(
            url, settings.migrations_dir, settings.ledger_schema, redact=settings.redact
        )
        with connect(other, "fingerprint") as conn:
            prints.append(fingerprint(conn, settings.ledger_schema))
    first, second = prints
    if first.major != second.major:
        report.progress(
            f"note: first runs PostgreSQL {first.major}, second PostgreSQL {second.major}; "
            "the lines below also differ where the two majors print the same schema differently"
        )
    differences = diff(first, second)
    run.schema_diff = SchemaDiff(first.hash, second.hash, differences)
    report.result(describe_diff(differences, "first", "second") if differences else "identical")
    if differences:
        raise MigrationFailed(f"schemas differ ({first.hash[:12]} vs {second.hash[:12]})")
