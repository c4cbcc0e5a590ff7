"""apply, run and the rehearsal (`apply --dry-run`): the pending migrations, with the phases
around them that `Steps` asks for."""

from __future__ import annotations

from migrate_safe.commands import text
from migrate_safe.commands.common import check_before_running, describe, load
from migrate_safe.commands.phases import (
    apply_phase,
    backup_phase,
    lint_pending,
    postflight_phase,
    preflight_phase,
)
from migrate_safe.config import Settings
from migrate_safe.engine import Engine
from migrate_safe.errors import MigrationFailed
from migrate_safe.lint import Finding
from migrate_safe.locks import strongest
from migrate_safe.options import PhaseOptions, PipelineOptions, Steps, phase_options
from migrate_safe.outcome import RehearsedMigration, RunReport, RunTarget
from migrate_safe.plan import LedgerState, plan_hash
from migrate_safe.report import Reporter
from migrate_safe.results import PlannedMigration, PublishedPlan
from migrate_safe.scanner import Migration
from migrate_safe.session import locked_ledger


def pipeline(
    options: PipelineOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    """`apply` and `run`: their options differ only in the steps."""
    phases = phase_options(options.phases, allow_missing_down=settings.allow_missing_down)
    run_pipeline(settings, report, run, target=options.target, steps=options.steps, options=phases)


def run_pipeline(
    settings: Settings,
    report: Reporter,
    run: RunReport,
    *,
    target: int | None,
    steps: Steps,
    options: PhaseOptions,
) -> None:
    source = load(settings, report)
    describe(settings, run)
    # The ledger is created by the apply phase, so a refused run leaves nothing behind.
    with locked_ledger(settings, report.command, create=False) as ledger:
        state = LedgerState(ledger.applied(), source)
        state.refuse_unsafe_apply()
        pending = state.to_apply(target)
        check_before_running([m.up for m in pending], report, run)
        going_to = pending[-1].version if pending else state.current_version
        run.target = RunTarget(going_to, plan_hash("up", pending))
        approved = options.expected_plan_hash
        if approved and approved != run.target.plan_hash:
            raise MigrationFailed(
                f"the plan changed since it was approved: it is now {run.target.plan_hash}, "
                f"approved {approved}; nothing was applied"
            )
        if steps.dry_run:
            findings = lint_pending(ledger, state, pending, options.lint)
            engine = Engine(ledger.conn, ledger, settings.policy, report)
            try:
                _rehearse(engine, pending, report, run)
            finally:
                run.plan = _published_plan(run, pending, findings)
            return
        if pending and steps.preflight:
            preflight_phase(
                ledger,
                state,
                pending,
                settings,
                options,
                report,
                run,
                enforce=steps.enforce_preflight,
            )
        if pending and steps.backup:
            backup_phase(ledger, state, settings, options, report, run)
        apply_phase(ledger, pending, source, settings, report, run)
        if steps.postflight:
            postflight_phase(ledger, source, target, options, report, run)


def _published_plan(
    run: RunReport, pending: list[Migration], findings: list[Finding]
) -> PublishedPlan:
    """What Plan mode publishes: the hash to approve, each migration with the strongest
    lock it took in the rehearsal, and the lint counts."""
    from migrate_safe.lint import summary  # its module loads the linter, which apply skips

    rehearsed = {entry.version: entry for entry in run.rehearsal or []}
    assert run.target is not None  # set before the rehearsal starts

    def locks(version: int) -> tuple[str, ...]:
        entry = rehearsed.get(version)
        taken = strongest(entry.locks_taken()) if entry else []
        return tuple(f"{lock.mode} {lock.relation}" for lock in taken)

    migrations = tuple(
        PlannedMigration(m.version, m.name, m.up.directives.no_transaction, locks(m.version))
        for m in pending
    )
    return PublishedPlan(run.target.plan_hash, "up", migrations, summary(findings))


def _rehearse(engine: Engine, pending: list[Migration], report: Reporter, run: RunReport) -> None:
    report.progress(f"rehearsal of {len(pending)} migration(s) in one transaction (rolled back)")
    results = run.rehearsal = engine.rehearse(pending)
    for entry in results:
        for line in text.rehearsed(entry):
            report.result(line)
        if entry.error is not None:
            error = entry.error
            raise MigrationFailed(
                f"rehearsal failed at {error.file}:{error.line}: {error.message} "
                f"(SQLSTATE {error.sqlstate}); nothing was changed",
                details=error.to_json(),
            )
    report.result(_rehearsal_verdict(results))


def _rehearsal_verdict(results: list[RehearsedMigration]) -> str:
    beyond = [entry.version for entry in results if entry.not_rehearsed is not None]
    passed = "rehearsal passed"
    if beyond:
        rehearsed = sum(entry.rehearsed for entry in results)
        passed += (
            f" for {rehearsed} migration(s); {len(beyond)} could not be rehearsed in one "
            f"transaction ({', '.join(map(str, beyond))}): apply runs each in its own"
        )
    return (
        f"{passed}; everything was rolled back "
        "(checked: the schema fingerprint and the ledger are as before)"
    )
