"""preflight, backup, restore and postflight on their own: each is also a phase that one of
the operator's Jobs runs alone."""

from __future__ import annotations

from migrate_safe.backup import (
    RestoreFailed,
    has_user_objects,
    resolve_backup,
    restore,
    verify_checksum,
)
from migrate_safe.commands.common import describe, load
from migrate_safe.commands.phases import backup_phase, postflight_phase, preflight_phase
from migrate_safe.config import Settings
from migrate_safe.errors import ConfigError, MigrationFailed
from migrate_safe.fingerprint import other_major, schema_hash
from migrate_safe.ledger import Ledger
from migrate_safe.options import (
    PhaseFlags,
    PostflightOptions,
    PreflightOptions,
    RestoreOptions,
    phase_options,
)
from migrate_safe.outcome import RestoreDone, RunReport
from migrate_safe.plan import LedgerState
from migrate_safe.report import Reporter
from migrate_safe.session import connect, locked_ledger


def preflight(
    options: PreflightOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    """Read-only: no advisory lock, no ledger created."""
    phases = phase_options(options.phases, allow_missing_down=settings.allow_missing_down)
    source = load(settings, report)
    describe(settings, run)
    with connect(settings, "preflight") as conn:
        ledger = Ledger(conn, settings.ledger_schema)
        state = LedgerState(ledger.applied(), source)
        # Unlike apply, a target below the current version is no error here: the operator's
        # preflight Job also reports what a rollback would start from.
        target = options.target
        pending = [m for m in state.pending if target is None or m.version <= target]
        preflight_phase(ledger, state, pending, settings, phases, report, run, target=target)


def backup(options: PhaseFlags, settings: Settings, report: Reporter, run: RunReport) -> None:
    phases = phase_options(options, allow_missing_down=settings.allow_missing_down)
    source = load(settings, report, missing_ok=True)
    describe(settings, run)
    with locked_ledger(settings, "backup", create=False) as ledger:
        state = LedgerState(ledger.applied(), source)
        backup_phase(ledger, state, settings, phases, report, run)


def restore_backup(
    options: RestoreOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    """The recovery path: whatever stops it exits 4 (rollback failed), except bad flags, an
    unreachable database and a missing --yes."""
    phases = phase_options(options.phases, allow_missing_down=settings.allow_missing_down)
    describe(settings, run)
    path = resolve_backup(phases.backup_dir, options.backup)
    manifest = verify_checksum(path, allow_missing=options.allow_missing_manifest)
    done = run.restore = RestoreDone(manifest_checked=manifest is not None)
    if manifest is None:
        report.progress(
            f"warning: {path} has no manifest; restoring it without a sha256 check "
            "(--allow-missing-manifest)"
        )
    try:
        with locked_ledger(settings, "restore", create=False) as ledger:
            if has_user_objects(ledger.conn) and not options.confirmed:
                raise ConfigError(
                    f"{run.database} is not empty: restoring {path.name} replaces every "
                    "application object; pass --yes to confirm"
                )
            report.progress(f"restoring {path} into {run.database} (one transaction)…")
            dumped_by = manifest.pg_dump_version if manifest else None
            dsn = settings.require_database_url()
            restore(ledger.conn, dsn, path, settings.redact, dumped_by=dumped_by)
            now = schema_hash(ledger.conn, ledger.schema)
    except MigrationFailed as error:  # another run holds the ledger's lock
        raise RestoreFailed(f"restore: {error.message}", details=error.details) from None
    done.restored = str(path)
    run.fingerprint = now
    if manifest and manifest.fingerprint and other_major(now, manifest.fingerprint) is None:
        done.matches_backup_fingerprint = now == manifest.fingerprint
    report.result(f"restored {path.name}; schema fingerprint {now}")


def postflight(
    options: PostflightOptions, settings: Settings, report: Reporter, run: RunReport
) -> None:
    phases = phase_options(options.phases, allow_missing_down=settings.allow_missing_down)
    source = load(settings, report, missing_ok=True)
    describe(settings, run)
    with locked_ledger(settings, "postflight") as ledger:
        postflight_phase(ledger, source, options.target, phases, report, run)
