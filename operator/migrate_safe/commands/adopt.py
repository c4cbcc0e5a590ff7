"""baseline, force and repair: the commands that write the ledger without running a
migration, to adopt an existing database or to recover from a failure a person has looked at.
Every change goes into the history."""

from __future__ import annotations

from migrate_safe.commands.common import describe, load
from migrate_safe.commands.phases import record_fingerprint
from migrate_safe.config import Settings
from migrate_safe.errors import ConfigError
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.options import BaselineOptions, ForceOptions
from migrate_safe.outcome import LedgerOutcome, RepairDone, RunReport
from migrate_safe.plan import LedgerState
from migrate_safe.report import Reporter, utcnow
from migrate_safe.session import locked_ledger


def _record(
    ledger: Ledger,
    report: Reporter,
    direction: str,
    outcome: str,
    version: int,
    name: str | None = None,
) -> None:
    ledger.append_history(
        HistoryEntry(report.run_id, direction, outcome, utcnow(), version=version, name=name)
    )
    report.event(f"{direction}_{outcome}", version=version)
    report.progress(f"  {direction}: version {version} {outcome}")


def baseline(
    options: BaselineOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    source = load(settings, report)
    describe(settings, run)
    with locked_ledger(settings, "baseline") as ledger:
        if ledger.applied():
            raise ConfigError("baseline: the ledger already has versions; use force instead")
        if options.golang_migrate_table:
            version = ledger.golang_migrate_version(options.golang_migrate_table)
        else:
            assert options.version is not None  # the command line requires one of the two
            version = options.version
        if version not in source.by_version():
            raise ConfigError(f"baseline --version {version}: no such migration in the source")
        with ledger.conn.transaction():
            for migration in (m for m in source.migrations if m.version <= version):
                ledger.upsert(migration, state="applied", run_id=report.run_id)
                _record(ledger, report, "baseline", "recorded", migration.version, migration.name)
        run.ledger = LedgerOutcome(version)
        run.fingerprint = record_fingerprint(ledger, report, "baseline", "succeeded")


def force(options: ForceOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    source = load(settings, report, missing_ok=True)
    describe(settings, run)
    version = options.version
    with locked_ledger(settings, "force") as ledger:
        rows = {row.version: row for row in ledger.applied()}
        migration = source.by_version().get(version)
        if version != 0 and version not in rows and migration is None:
            raise ConfigError(f"force --version {version}: not in the ledger nor the source")
        with ledger.conn.transaction():
            for row in sorted(rows.values(), key=lambda r: -r.version):
                if row.version > version:
                    ledger.delete(row.version)
                    _record(ledger, report, "force", "removed", row.version, row.name)
            if version in rows:
                if rows[version].dirty:
                    ledger.set_state(version, "applied")
                    _record(ledger, report, "force", "marked_applied", version, rows[version].name)
            elif migration is not None:
                ledger.upsert(migration, state="applied", run_id=report.run_id)
                _record(ledger, report, "force", "marked_applied", version, migration.name)
        run.ledger = LedgerOutcome(version if version else None)
        run.fingerprint = record_fingerprint(ledger, report, "force", "succeeded")


def repair(settings: Settings, report: Reporter, run: RunReport) -> None:
    source = load(settings, report)
    describe(settings, run)
    with locked_ledger(settings, "repair") as ledger:
        state = LedgerState(ledger.applied(), source)
        known = source.by_version()
        with ledger.conn.transaction():
            for row in state.dirty:
                ledger.delete(row.version)
                _record(ledger, report, "repair", "removed_dirty", row.version, row.name)
            for mismatch in state.checksum_mismatches:
                migration = known[mismatch.version]
                ledger.realign(mismatch.version, migration.up.checksum, migration.down)
                _record(ledger, report, "repair", "realigned", mismatch.version, migration.name)
        run.repair = RepairDone(
            removed_dirty=[row.version for row in state.dirty],
            realigned=[m.version for m in state.checksum_mismatches],
        )
        run.fingerprint = record_fingerprint(ledger, report, "repair", "succeeded")
