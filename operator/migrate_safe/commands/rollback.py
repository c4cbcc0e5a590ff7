"""rollback: the down migrations of applied versions, newest first, each in its own
transaction, after lint has read them."""

from __future__ import annotations

from migrate_safe.commands.common import check_before_running, describe, load
from migrate_safe.commands.phases import lint_rollback, outcome_recorded
from migrate_safe.config import Settings
from migrate_safe.engine import Engine
from migrate_safe.lint import LintConfig
from migrate_safe.options import RollbackOptions, lint_config
from migrate_safe.outcome import RunReport
from migrate_safe.plan import LedgerState
from migrate_safe.report import Reporter
from migrate_safe.session import locked_ledger


def rollback(
    options: RollbackOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    lint = lint_config(options.config, allow_missing_down=settings.allow_missing_down)
    run_rollback(
        settings,
        report,
        run,
        options.target,
        options.steps,
        lint,
        enforce_lint=options.enforce_lint,
    )


def run_rollback(
    settings: Settings,
    report: Reporter,
    run: RunReport,
    target: int | None,
    steps: int | None,
    lint: LintConfig,
    *,
    enforce_lint: bool = True,
) -> None:
    source = load(settings, report, missing_ok=True)
    describe(settings, run)
    with locked_ledger(settings, "rollback") as ledger:
        state = LedgerState(ledger.applied(), source)
        if state.dirty:
            state.refuse_unsafe_apply()
        plan = state.to_roll_back(target=target, steps=steps)
        check_before_running([step.down for step in plan], report, run)
        lint_rollback(ledger, plan, report, run, lint, enforce=enforce_lint)
        report.progress(f"rollback on {run.database}: {len(plan)} version(s)")
        rolled_back = run.rolled_back = []
        engine = Engine(ledger.conn, ledger, settings.policy, report)
        with outcome_recorded(ledger, source, report, run, "rollback"):
            for step in plan:
                rolled_back.append(engine.rollback(step))
        current = run.ledger.current_version if run.ledger else None
        report.progress(
            f"rolled back {len(rolled_back)}; current version {current or 'none (empty)'}"
        )
