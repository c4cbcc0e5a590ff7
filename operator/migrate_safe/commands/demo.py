"""demo: a throwaway PostgreSQL, and the example migrations walked through a rehearsal, the
full pipeline, a rollback and a re-apply, printing what a user would see."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path

from migrate_safe.commands.pipeline import run_pipeline
from migrate_safe.commands.reading import status
from migrate_safe.commands.rollback import run_rollback
from migrate_safe.config import Settings
from migrate_safe.ledger import Ledger
from migrate_safe.localpg import LocalPostgres
from migrate_safe.options import DemoOptions, PhaseOptions, Steps
from migrate_safe.outcome import RunReport
from migrate_safe.report import Reporter
from migrate_safe.session import connect

# The examples, shipped inside the package so that a wheel or the image, which have no repository
# around them, can run the demo (examples/migrations in the repository is a link to them).
DEMO_MIGRATIONS = "demo_migrations"


@contextmanager
def demo_migrations() -> Iterator[Path]:
    with as_file(files("migrate_safe") / DEMO_MIGRATIONS) as directory:
        yield directory


def demo(options: DemoOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    if settings.migrations_dir.is_dir():
        _walk(options, settings, report, run)
        return
    with demo_migrations() as directory:
        settings.migrations_dir = directory
        _walk(options, settings, report, run)


def _walk(options: DemoOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    report.progress("starting a throwaway PostgreSQL (initdb + pg_ctl on a loopback port)…")
    with LocalPostgres(keep=options.keep) as pg:
        settings.database_url = pg.url("postgres")
        settings.redact.add_secret(pg.password)
        phases = PhaseOptions(backup_dir=pg.root / "backups")
        report.progress(
            f"PostgreSQL on 127.0.0.1:{pg.port}, migrations from {settings.migrations_dir}"
        )

        def pipeline(steps: Steps) -> Callable[[RunReport], None]:
            return lambda step: run_pipeline(
                settings, report, step, target=None, steps=steps, options=phases
            )

        def rollback_two(step: RunReport) -> None:
            run_rollback(settings, report, step, None, 2, phases.lint)

        walk: list[tuple[str, Callable[[RunReport], None]]] = [
            ("rehearsal (apply --dry-run)", pipeline(Steps(dry_run=True))),
            ("run: preflight, backup, apply, postflight", pipeline(Steps(postflight=True))),
            ("rollback --steps 2", rollback_two),
            ("apply again", pipeline(Steps())),
        ]
        for title, command in walk:
            report.result(f"\n== {title}")
            step = RunReport()
            run.steps.append((title, step))
            command(step)
        report.result("\n== status")
        step = RunReport()
        run.steps.append(("status", step))
        status(settings, report, step, table=True)
        _print_history(settings, report)
        if options.keep:
            report.result(f"\ncluster kept in {pg.root} (port {pg.port})")


def _print_history(settings: Settings, report: Reporter) -> None:
    report.result(f"\n== ledger history ({settings.ledger_schema}.history)")
    with connect(settings, "demo") as conn:
        history = Ledger(conn, settings.ledger_schema).history()
    for row in history:
        report.result(
            f"  #{row.id:<3} {row.version or '':>4} {row.direction:5} {row.outcome:10} "
            f"attempt {row.attempt}"
        )
