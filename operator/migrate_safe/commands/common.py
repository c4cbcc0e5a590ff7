"""What every handler does first: load the source, say where it works, parse what it will run."""

from __future__ import annotations

from migrate_safe.config import Settings, describe_dsn
from migrate_safe.outcome import RunReport
from migrate_safe.report import Reporter
from migrate_safe.scanner import Script
from migrate_safe.source import Source, check_scripts, load_source


def load(settings: Settings, report: Reporter, *, missing_ok: bool = False) -> Source:
    """The migrations directory; with `missing_ok`, an absent one is an empty source (a
    rollback or a restore can work from the ledger alone)."""
    if missing_ok and not settings.migrations_dir.exists():
        report.progress(
            f"note: {settings.migrations_dir} not found; using down SQL from the ledger"
        )
        return Source(settings.migrations_dir, [])
    source = load_source(settings.migrations_dir, allow_missing_down=settings.allow_missing_down)
    for warning in source.warnings:
        report.progress(f"warning: {warning}")
    return source


def describe(settings: Settings, run: RunReport) -> None:
    """Where the run works: the database (never its password) and the ledger's schema."""
    run.database = describe_dsn(settings.require_database_url())
    run.ledger_schema = settings.ledger_schema


def check_before_running(scripts: list[Script], report: Reporter, run: RunReport) -> None:
    """Every file of the run parses and leaves the transaction to the engine, or nothing runs."""
    notes = check_scripts(scripts)
    for note in notes:
        report.event("transaction_wrapper_dropped", note=note)
        report.progress(f"note: {note}")
    run.notes += notes
