"""Handlers of the safety commands: preflight, backup, restore, postflight, fingerprint and
verify. Each one is also a phase the operator's Jobs run alone."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migrate_safe.backup import (
    RestoreFailed,
    has_user_objects,
    resolve_backup,
    restore,
    verify_checksum,
)
from migrate_safe.commands import describe, load
from migrate_safe.config import Settings
from migrate_safe.errors import (
    ConfigError,
    ExitCode,
    MigrateSafeError,
    MigrationFailed,
    SourceError,
)
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint, other_major
from migrate_safe.ledger import Ledger
from migrate_safe.lint import DEFAULT_PG_VERSION, exit_code, lint_directory, render, summary
from migrate_safe.localpg import LocalPostgres
from migrate_safe.options import lint_config, phase_options
from migrate_safe.pipeline import backup_phase, postflight_phase, preflight_phase, server_major
from migrate_safe.plan import LedgerState
from migrate_safe.report import Reporter
from migrate_safe.session import connect, locked_ledger
from migrate_safe.settings_file import load_settings_file
from migrate_safe.source import Source
from migrate_safe.verify import (
    FAIL,
    NOT_RUN,
    ScratchServer,
    Verifier,
    failure_message,
    markdown,
    prepare_progression,
    setup_files,
    text_summary,
)

Args = argparse.Namespace
Body = dict[str, Any]


def preflight(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    """Read-only: no advisory lock, no ledger created."""
    options = phase_options(args)
    source = load(settings, report)
    describe(settings, body)
    with connect(settings, "preflight") as conn:
        ledger = Ledger(conn, settings.ledger_schema)
        state = LedgerState(ledger.applied(), source)
        # Unlike apply, a target below the current version is no error here: the operator's
        # preflight Job also reports what a rollback would start from.
        pending = [m for m in state.pending if args.to is None or m.version <= args.to]
        preflight_phase(ledger, state, pending, settings, options, report, body, target=args.to)


def backup(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    options = phase_options(args)
    source = load(settings, report, missing_ok=True)
    describe(settings, body)
    with locked_ledger(settings, "backup", create=False) as ledger:
        state = LedgerState(ledger.applied(), source)
        backup_phase(ledger, state, settings, options, report, body)


def restore_backup(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    """The recovery path: whatever stops it exits 4 (rollback failed), except bad flags, an
    unreachable database and a missing --yes."""
    options = phase_options(args)
    describe(settings, body)
    path = resolve_backup(options.backup_dir, args.backup)
    manifest = verify_checksum(path, allow_missing=args.allow_missing_manifest)
    body["manifest_checked"] = manifest is not None
    if manifest is None:
        report.progress(
            f"warning: {path} has no manifest; restoring it without a sha256 check "
            "(--allow-missing-manifest)"
        )
    try:
        with locked_ledger(settings, "restore", create=False) as ledger:
            if has_user_objects(ledger.conn) and not args.yes:
                raise ConfigError(
                    f"{body['database']} is not empty: restoring {path.name} replaces every "
                    "application object; pass --yes to confirm"
                )
            report.progress(f"restoring {path} into {body['database']} (one transaction)…")
            dumped_by = manifest.pg_dump_version if manifest else None
            dsn = settings.require_database_url()
            restore(ledger.conn, dsn, path, settings.redact, dumped_by=dumped_by)
            now = fingerprint(ledger.conn, ledger.schema).hash
    except MigrationFailed as error:  # another run holds the ledger's lock
        raise RestoreFailed(f"restore: {error.message}", details=error.details) from None
    body["restored"] = str(path)
    body["fingerprint"] = now
    if manifest and manifest.fingerprint and other_major(now, manifest.fingerprint) is None:
        body["matches_backup_fingerprint"] = now == manifest.fingerprint
    report.result(f"restored {path.name}; schema fingerprint {now}")


def postflight(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    options = phase_options(args)
    source = load(settings, report, missing_ok=True)
    describe(settings, body)
    with locked_ledger(settings, "postflight") as ledger:
        postflight_phase(ledger, source, args.to, options, report, body)


def fingerprint_command(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    if args.diff:
        _fingerprint_diff(args.diff, settings, report, body)
        return
    with connect(settings, "fingerprint") as conn:
        current = fingerprint(conn, settings.ledger_schema)
    body.update(current.as_dict())
    if not args.json:
        report.result(current.hash)


def _fingerprint_diff(urls: list[str], settings: Settings, report: Reporter, body: Body) -> None:
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
    body.update(
        first=first.hash,
        second=second.hash,
        identical=not differences,
        differences=[d.__dict__ for d in differences],
    )
    report.result(describe_diff(differences, "first", "second") if differences else "identical")
    if differences:
        raise MigrationFailed(f"schemas differ ({first.hash[:12]} vs {second.hash[:12]})")


# --- lint ---------------------------------------------------------------------------------


class LintFailed(MigrateSafeError):
    """Lint's own contract: exit 1 when an error (or, with --strict, a warning) remains."""

    exit_code = ExitCode.PREFLIGHT_FAILED


def lint(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    config = lint_config(args, load_settings_file(args.config))
    pg_version = args.pg_version or _server_major_or_default(settings)
    directory = Path(args.directory) if args.directory else settings.migrations_dir
    findings = lint_directory(
        directory, pg_version=pg_version, config=config,
        harness_timeouts=not args.no_harness_timeouts,
    )  # fmt: skip
    counts = summary(findings)
    body["lint"] = {
        "pg_version": pg_version,
        "findings": [f.as_dict() for f in findings],
        "summary": counts,
    }
    if not args.json:
        report.result(render(findings, args.format).rstrip("\n"))
    if exit_code(findings, strict=args.strict):
        raise LintFailed(f"lint: {counts['error']} error(s), {counts['warning']} warning(s)")


def _server_major_or_default(settings: Settings) -> int:
    """The server's major version when a database is given, else lint's default."""
    if not settings.database_url:
        return DEFAULT_PG_VERSION
    with connect(settings, "lint") as conn:
        return server_major(conn)


# --- verify ---------------------------------------------------------------------------------


@contextmanager
def scratch_database(settings: Settings, report: Reporter) -> Iterator[ScratchServer]:
    """Where verify makes its databases: the given server (the URL's database is only used to
    create and drop them) or, without a URL, a throwaway server of its own."""
    if settings.database_url:
        yield ScratchServer(_scratch(settings, settings.database_url))
        return
    report.progress("verify: starting a throwaway PostgreSQL")
    with LocalPostgres() as pg:
        yield ScratchServer(_scratch(settings, pg.url()))


def _scratch(settings: Settings, url: str) -> Settings:
    return Settings(
        url,
        settings.migrations_dir,
        settings.ledger_schema,
        policy=settings.policy,
        redact=settings.redact,
    )


def unrunnable_files(source: Source) -> list[str]:
    """Why each file of the source cannot run, one line each (file:line: reason)."""
    found: list[str] = []
    for migration in source.migrations:
        for script in (migration.up, migration.down):
            if script is None:
                continue
            try:
                script.body  # noqa: B018 (parsing it is the check)
            except SourceError as error:
                found += error.message.splitlines()
    return found


def verify(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    if args.directory:
        settings.migrations_dir = Path(args.directory)
    source = load(settings, report)
    # A file that cannot run (a syntax error, transaction control) fails its own step, and
    # every other step is still checked; the exit code says so at the end (5).
    unrunnable = unrunnable_files(source)
    file = load_settings_file(args.config)
    setups = setup_files(args.setup, file, args.config)
    lint = lint_config(args, file)
    with scratch_database(settings, report) as scratch, scratch.databases():
        pg_version = prepare_progression(scratch.progression, setups)
        verifier = Verifier(
            report, args.slow_migration_seconds, lint, pg_version, settings.allow_missing_down
        )
        results = verifier.run(scratch, source.migrations)
    body["setup"] = [str(setup.path) for setup in setups]
    body["migrations"] = [r.__dict__ for r in results]
    body["not_run"] = [r.version for r in results if r.result == NOT_RUN]
    body["markdown"] = markdown(results)
    report.result(body["markdown"] if args.markdown else text_summary(results))
    failed = [r for r in results if r.result == FAIL]
    details: dict[str, object] = {"versions": [r.version for r in failed]}
    if unrunnable:
        listing = "\n".join(f"  - {line}" for line in unrunnable)
        raise ConfigError(
            f"{len(unrunnable)} migration file(s) cannot run:\n{listing}\n"
            + (failure_message(failed, len(results)) if failed else ""),
            details=details,
        )
    if failed:
        raise MigrationFailed(failure_message(failed, len(results)), details=details)
    report.progress(f"verify passed: {len(results)} migration(s) up, down and up again")
