"""verify and lint: the gates a pull request passes before its migrations reach a database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from migrate_safe.commands.common import load
from migrate_safe.config import Settings
from migrate_safe.errors import (
    ConfigError,
    ExitCode,
    MigrateSafeError,
    MigrationFailed,
    SourceError,
)
from migrate_safe.lint import DEFAULT_PG_VERSION, exit_code, lint_directory, render, summary
from migrate_safe.localpg import LocalPostgres
from migrate_safe.options import LintCommandOptions, VerifyOptions, lint_config
from migrate_safe.outcome import FAIL, LintReport, RunReport, VerifyReport
from migrate_safe.report import Reporter
from migrate_safe.session import connect
from migrate_safe.settings_file import load_settings_file
from migrate_safe.source import Source
from migrate_safe.verify import (
    ScratchServer,
    Verifier,
    failure_message,
    markdown,
    prepare_progression,
    setup_files,
    text_summary,
)

# --- lint ---------------------------------------------------------------------------------


class LintFailed(MigrateSafeError):
    """Lint's own contract: exit 1 when an error (or, with --strict, a warning) remains."""

    exit_code = ExitCode.PREFLIGHT_FAILED


def lint(options: LintCommandOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    config = lint_config(options.config, allow_missing_down=settings.allow_missing_down)
    pg_version = options.pg_version or _server_major_or_default(settings)
    directory = options.directory or settings.migrations_dir
    findings = lint_directory(
        directory,
        pg_version=pg_version,
        config=config,
        harness_timeouts=options.harness_timeouts,
    )
    run.lint = LintReport(findings, pg_version=pg_version)
    if not report.json_output:
        report.result(render(findings, options.format).rstrip("\n"))
    if exit_code(findings, strict=options.strict):
        counts = summary(findings)
        raise LintFailed(f"lint: {counts['error']} error(s), {counts['warning']} warning(s)")


def _server_major_or_default(settings: Settings) -> int:
    """The server's major version when a database is given, else lint's default."""
    if not settings.database_url:
        return DEFAULT_PG_VERSION
    with connect(settings, "lint") as conn:
        return conn.info.server_version // 10000


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


def verify(options: VerifyOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    if options.directory:
        settings.migrations_dir = options.directory
    source = load(settings, report)
    # A file that cannot run (a syntax error, transaction control) fails its own step, and
    # every other step is still checked; the exit code says so at the end (5).
    unrunnable = unrunnable_files(source)
    file = load_settings_file(options.config)
    setups = setup_files(list(options.setup), file, options.config)
    lint = lint_config(options.config, allow_missing_down=settings.allow_missing_down, file=file)
    with scratch_database(settings, report) as scratch, scratch.databases():
        pg_version = prepare_progression(scratch.progression, setups)
        verifier = Verifier(
            report, options.slow_migration_seconds, lint, pg_version, settings.allow_missing_down
        )
        results = verifier.run(scratch, source.migrations)
    summary_markdown = markdown(results)
    run.verify = VerifyReport([str(setup.path) for setup in setups], results, summary_markdown)
    report.result(summary_markdown if options.markdown else text_summary(results))
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
