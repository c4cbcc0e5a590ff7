"""The `migrate-safe` command line: subcommands, seed-style flags, exit codes, reports.

The only module that sees argparse: each command's flags become its typed options here
(`options.py`), and the handler (`commands/`) gets those.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import NoReturn

import psycopg

from migrate_safe import __version__
from migrate_safe.commands import adopt, demo, phase_jobs, pipeline, reading, rollback, wait
from migrate_safe.config import (
    DEFAULT_LEDGER_SCHEMA,
    DEFAULT_LOG_DIR,
    DEFAULT_MIGRATIONS_DIR,
    ApplyPolicy,
    Redactor,
    Settings,
)
from migrate_safe.durations import parse_duration, parse_positive_duration
from migrate_safe.errors import ConfigError, ExitCode, MigrateSafeError, transient_sqlstate
from migrate_safe.options import (
    BackupFlags,
    BaselineOptions,
    DemoOptions,
    FingerprintOptions,
    ForceOptions,
    LintCommandOptions,
    PhaseFlags,
    PipelineOptions,
    PlanOptions,
    PostflightOptions,
    PreflightFlags,
    PreflightOptions,
    RestoreOptions,
    RollbackOptions,
    Steps,
    VerifyOptions,
    WaitOptions,
)
from migrate_safe.outcome import ErrorReport, RunReport
from migrate_safe.report import Reporter, default_termination_log

# Seed-style flags kept as aliases: `migrate-safe --apply` is `migrate-safe apply`.
SEED_FLAGS = {
    "--apply": "apply",
    "--rollback": "rollback",
    "--status": "status",
    "--plan": "plan",
    "--preflight": "preflight",
    "--postflight": "postflight",
}

# A command bound to its options: what is left to give it is where and how it reports.
Command = Callable[[Settings, Reporter, RunReport], None]
# The commands that run migrations: they take the lock and retry policy flags.
POLICY_COMMANDS = ("apply", "run", "rollback")
# Not a harness command: no database, no report. Imports kopf only when asked for.
OPERATOR = "operator"
# A database error that escapes a command counts as that command's failure.
FAILURE_CODE = {
    "rollback": ExitCode.ROLLBACK_FAILED,
    "restore": ExitCode.ROLLBACK_FAILED,
    "preflight": ExitCode.PREFLIGHT_FAILED,
    "backup": ExitCode.PREFLIGHT_FAILED,
    "postflight": ExitCode.POSTFLIGHT_FAILED,
}


class _Parser(argparse.ArgumentParser):
    """Bad flags are config errors (exit 5), not argparse's exit 2 (a migration failure)."""

    def error(self, message: str) -> NoReturn:
        # main() prints the "migrate-safe: error:" prefix; name only the subcommand here.
        command = self.prog.removeprefix("migrate-safe").strip()
        if not command:
            raise ConfigError(f"{message} (see migrate-safe --help)")
        raise ConfigError(f"{command}: {message} (see migrate-safe {command} --help)")


def _duration(what: str, zero_means: str | None = None) -> Callable[[str], float]:
    """A duration flag; with `zero_means`, zero is refused and the message says why."""

    def parse(text: str) -> float:
        try:
            if zero_means is None:
                return parse_duration(text, what=what)
            return parse_positive_duration(text, what=what, zero_means=zero_means)
        except ConfigError as error:
            # argparse names the flag already ("argument --lock-timeout: …").
            raise argparse.ArgumentTypeError(error.message.removeprefix(f"{what}: ")) from None

    return parse


_NO_TIMEOUT = "PostgreSQL reads 0 as no timeout at all: it would wait forever"
_NO_PAUSE = "0 would retry at once, without the pause that lets other sessions through"


def _integer(minimum: int, why: str) -> Callable[[str], int]:
    """An integer flag of at least `minimum`; `why` says what smaller values would mean."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum} ({why})")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    """A threshold in seconds: a finite number above zero (zero would flag everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number of seconds above zero")
    return value


_VERSION = "migration versions start at 1"
_TARGET = "--to 0 means before the first migration"
_STEPS = "roll back at least one version"


def _common(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--database-url",
        default=env.get("DATABASE_URL"),
        help="PostgreSQL DSN (default: $DATABASE_URL); its password never appears in output",
    )
    group.add_argument(
        "--migrations-dir",
        type=Path,
        default=Path(env.get("MIGRATIONS_DIR", DEFAULT_MIGRATIONS_DIR)),
        help="directory of NNN_name.up.sql / .down.sql (default: $MIGRATIONS_DIR or ./migrations)",
    )
    group.add_argument(
        "--ledger-schema",
        default=env.get("MIGRATE_SAFE_LEDGER_SCHEMA", DEFAULT_LEDGER_SCHEMA),
        help="schema holding the ledger (default: migrate_safe)",
    )
    group.add_argument(
        "--log-dir",
        type=Path,
        default=Path(env.get("MIGRATE_SAFE_LOG_DIR", DEFAULT_LOG_DIR)),
        help="where the JSON report and events.jsonl go (default: ./logs)",
    )
    group.add_argument(
        "--termination-log",
        default=None,
        help="file for a ≤4 KiB JSON summary (default: /dev/termination-log when writable; "
        "'none' disables)",
    )
    group.add_argument(
        "--config", type=Path, help="settings file (default ./migrate-safe.toml when present)"
    )
    group.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    group.add_argument(
        "--allow-missing-down",
        action="store_true",
        help="accept up migrations without a down migration (reported as warnings)",
    )


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ApplyPolicy()
    group = parser.add_argument_group("lock and retry policy")
    add = group.add_argument
    add(
        "--lock-timeout",
        type=_duration("--lock-timeout", _NO_TIMEOUT),
        default=defaults.lock_timeout,
        help="first attempt's lock_timeout (default 500ms); doubles on each retry",
    )
    add(
        "--lock-timeout-max",
        type=_duration("--lock-timeout-max", _NO_TIMEOUT),
        default=defaults.lock_timeout_max,
        help="cap of the escalating lock_timeout (default 10s)",
    )
    add(
        "--lock-retries",
        type=_integer(0, "0 means a single attempt"),
        default=defaults.lock_retries,
        help="retries after SQLSTATE 55P03 lock_not_available (default 10)",
    )
    add(
        "--retry-backoff",
        type=_duration("--retry-backoff", _NO_PAUSE),
        default=defaults.retry_backoff,
        help="pause after the first failed attempt, doubling (default 250ms)",
    )
    add(
        "--retry-backoff-max",
        type=_duration("--retry-backoff-max", _NO_PAUSE),
        default=defaults.retry_backoff_max,
        help="cap of the pause between attempts (default 10s)",
    )
    add(
        "--statement-timeout",
        type=_duration("--statement-timeout", _NO_TIMEOUT),
        default=defaults.statement_timeout,
        help="statement_timeout per statement (default 1h)",
    )
    add(
        "--lock-wait",
        type=_duration("--lock-wait"),
        default=defaults.advisory_lock_wait,
        help="how long to wait for another migrate-safe run to finish (default 60s)",
    )
    add(
        "--quiet-wait",
        type=_duration("--quiet-wait"),
        default=defaults.quiet_wait,
        help="how long to wait for long transactions on touched tables to end before "
        "queueing a lock (default 30s)",
    )


def _preflight_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preflight (also from [preflight] in --config)")
    add = group.add_argument
    add(
        "--long-transaction-seconds",
        type=_positive_seconds,
        help="transactions older than this are long (default 30)",
    )
    add(
        "--idle-in-transaction-seconds",
        type=_positive_seconds,
        help="idle in transaction longer than this is reported (default 10)",
    )
    add(
        "--replication-lag-seconds",
        type=_positive_seconds,
        help="standby lag that warns (default 30)",
    )
    add("--fail-on", action="append", metavar="CHECK", help="make a check fail (repeatable)")
    add("--warn-on", action="append", metavar="CHECK", help="make a check only warn (repeatable)")


def _backup_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    group = parser.add_argument_group("backup (also from [backup] in --config)")
    add = group.add_argument
    add(
        "--backup-dir",
        type=Path,
        default=env.get("MIGRATE_SAFE_BACKUP_DIR"),
        help="where backups go (default backups/migrations)",
    )
    add(
        "--format",
        dest="backup_format",
        choices=["custom", "plain-gzip"],
        help="pg_dump custom format (default) or gzip'd plain SQL",
    )
    add(
        "--retention",
        type=_integer(1, "keep at least the backup just taken"),
        help="keep the newest N backups (default 5)",
    )
    add(
        "--backup-lock-wait",
        type=_duration(
            "--backup-lock-wait", "pg_dump reads 0 as no timeout: it would wait forever"
        ),
        help="give up a dump that waits this long for a table lock (default 60s)",
    )


def _pipeline_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--to", type=_integer(0, _TARGET), help="apply up to and including this version")
    add("--force", action="store_true", help="apply even when preflight fails (the report says so)")
    add("--no-backup", action="store_true", help="skip the backup before applying")
    add("--expected-fingerprint", help="postflight fails unless the schema has this fingerprint")
    add("--expect-plan-hash", help="apply only if the plan still has this hash (an approval)")
    _preflight_flags(parser)
    _backup_flags(parser)
    _policy_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="migrate-safe",
        description="Safe PostgreSQL schema migrations. Exit codes: 0 ok, 1 preflight failed, "
        "2 migration failed, 3 postflight failed, 4 rollback failed, 5 config error.",
    )
    parser.add_argument("--version", action="version", version=f"migrate-safe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    apply = sub.add_parser("apply", help="preflight, backup, then apply pending migrations")
    _pipeline_flags(apply)
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="rehearse: run pending migrations in one transaction, report locks, roll back",
    )
    apply.add_argument(
        "--skip-preflight",
        action="store_true",
        help="do not run preflight (the operator runs it as its own Job)",
    )
    _pipeline_flags(sub.add_parser("run", help="preflight → backup → apply → postflight"))

    rollback = sub.add_parser("rollback", help="roll back applied migrations, newest first")
    rollback.add_argument(
        "--force",
        action="store_true",
        help="roll back even when lint finds errors in the down files (the report says so)",
    )
    target = rollback.add_mutually_exclusive_group()
    target.add_argument(
        "--to", type=_integer(0, _TARGET), help="roll back every version above this one"
    )
    target.add_argument(
        "--steps",
        type=_integer(1, _STEPS),
        help="roll back this many versions (default 1)",
    )
    _policy_flags(rollback)

    preflight = sub.add_parser("preflight", help="is the database ready for DDL? (exit 1 if not)")
    preflight.add_argument(
        "--to", type=_integer(0, _TARGET), help="consider migrations up to this version"
    )
    _preflight_flags(preflight)
    _backup_flags(sub.add_parser("backup", help="pg_dump, verified, with manifest and retention"))
    restore = sub.add_parser("restore", help="restore a backup (replaces application objects)")
    restore.add_argument("--backup", default="latest", help="a backup file or 'latest'")
    restore.add_argument(
        "--yes", action="store_true", help="confirm restoring over a non-empty database"
    )
    restore.add_argument(
        "--allow-missing-manifest",
        action="store_true",
        help="restore a backup that has no manifest, so no sha256 to check it against",
    )
    _backup_flags(restore)
    postflight = sub.add_parser("postflight", help="prove the result (exit 3 if not)")
    postflight.add_argument(
        "--to", type=_integer(0, _TARGET), help="the version the ledger must be at"
    )
    postflight.add_argument("--expected-fingerprint", help="fail unless the schema has this hash")

    fingerprint = sub.add_parser("fingerprint", help="sha256 of the canonical schema")
    fingerprint.add_argument(
        "--diff",
        nargs=2,
        metavar=("URL_A", "URL_B"),
        help="show what differs between two databases",
    )
    verify = sub.add_parser("verify", help="CI gate: up, down, up again on a throwaway database")
    verify.add_argument(
        "directory", nargs="?", help="migrations directory (default --migrations-dir)"
    )
    verify.add_argument("--markdown", action="store_true", help="print a pull-request summary")
    verify.add_argument(
        "--slow-migration-seconds",
        type=_positive_seconds,
        default=300.0,
        help="warn on a migration slower than this (default 300)",
    )
    verify.add_argument(
        "--setup",
        type=Path,
        action="append",
        metavar="FILE",
        help="SQL run in the scratch database before the first migration, for objects the "
        "directory assumes exist (repeatable; default: [verify] setup in --config)",
    )

    lint = sub.add_parser("lint", help="static safety checks of the migrations (exit 1 on errors)")
    lint.add_argument(
        "directory", nargs="?", help="migrations directory (default --migrations-dir)"
    )
    lint.add_argument("--format", choices=["text", "json", "github", "sarif"], default="text")
    lint.add_argument(
        "--pg-version",
        type=_integer(1, "a major version, e.g. 15"),
        help="target PostgreSQL major version (default: the server's, else 15)",
    )
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    lint.add_argument(
        "--no-harness-timeouts",
        action="store_true",
        help="the files may be run by another tool: require SET lock_timeout",
    )

    wait = sub.add_parser("wait", help="block until the ledger reaches a version (init containers)")
    wait.add_argument("--version", type=_integer(1, _VERSION), dest="wait_version", required=True)
    wait.add_argument(
        "--timeout",
        type=_duration("--timeout"),
        default=300.0,
        help="give up after this long (default 5m; exit 2)",
    )
    wait.add_argument(
        "--interval",
        type=_duration("--interval", "0 would query the database without pause"),
        default=2.0,
        help="how often to look (default 2s)",
    )

    sub.add_parser("status", help="current version, pending, dirty, drift")
    plan = sub.add_parser("plan", help="what apply or rollback would run; writes nothing")
    plan.add_argument(
        "--to",
        type=_integer(0, _TARGET),
        help="target version (below current: a rollback plan)",
    )
    plan.add_argument(
        "--steps", type=_integer(1, _STEPS), help="plan rolling back this many versions"
    )

    baseline = sub.add_parser("baseline", help="adopt an existing database at a version")
    source = baseline.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--version",
        type=_integer(1, _VERSION),
        dest="baseline_version",
        help="record every source migration up to N as applied",
    )
    source.add_argument(
        "--from-golang-migrate",
        nargs="?",
        const="schema_migrations",
        metavar="TABLE",
        help="take the version from golang-migrate's table (default schema_migrations)",
    )
    force = sub.add_parser("force", help="declare the schema to be at version N (clears dirty)")
    force.add_argument(
        "--version",
        type=_integer(0, "--version 0 means no migration applied"),
        dest="force_version",
        required=True,
    )
    sub.add_parser("repair", help="drop dirty rows and realign checksums with the source")
    operator = sub.add_parser(OPERATOR, help="run the Kubernetes operator (kopf)")
    operator.add_argument("--namespace", action="append", help="watch this namespace (repeatable)")
    operator.add_argument(
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (default without --namespace)",
    )
    operator.add_argument("--metrics-port", type=int, default=9090, help="0 disables /metrics")
    operator.add_argument("--liveness-port", type=int, default=8080, help="0 disables /healthz")
    operator.add_argument("--standalone", action="store_true", help="no peering with others")
    operator.add_argument("--peering", help="peering object name (HA with --priority)")
    operator.add_argument("--priority", type=int, default=0, help="peering priority")
    operator.add_argument(
        "--no-fleets",
        action="store_false",
        dest="fleets",
        help="do not serve DatabaseMigrationSets (no watch on database Secrets)",
    )
    operator.add_argument("--verbose", action="store_true", help="debug logging")

    demo = sub.add_parser("demo", help="rehearse, run, roll back the examples on a throwaway PG")
    demo.add_argument("--keep", action="store_true", help="leave the throwaway cluster running")

    for command_name, command in sub.choices.items():
        if command_name != OPERATOR:
            _common(command)
    return parser


def translate_seed_flags(argv: list[str]) -> list[str]:
    """`--apply`, `--rollback`, `--dry-run`, `--status`, `--plan` without a subcommand."""
    if any(arg in _BIND for arg in argv):
        return argv
    for flag, command in SEED_FLAGS.items():
        if flag in argv:
            rest = [a for a in argv if a != flag]
            return [command, *rest]
    if "--dry-run" in argv:
        return ["apply", *argv]
    return argv


def settings_from(args: argparse.Namespace) -> Settings:
    policy = _policy(args) if args.command in POLICY_COMMANDS else ApplyPolicy()
    return Settings(
        database_url=args.database_url,
        migrations_dir=args.migrations_dir,
        ledger_schema=args.ledger_schema,
        log_dir=args.log_dir,
        termination_log=_termination_log(args.termination_log),
        allow_missing_down=args.allow_missing_down,
        policy=policy,
    )


def _policy(args: argparse.Namespace) -> ApplyPolicy:
    return ApplyPolicy(
        lock_timeout=args.lock_timeout,
        lock_timeout_max=args.lock_timeout_max,
        lock_retries=args.lock_retries,
        retry_backoff=args.retry_backoff,
        retry_backoff_max=args.retry_backoff_max,
        statement_timeout=args.statement_timeout,
        advisory_lock_wait=args.lock_wait,
        quiet_wait=args.quiet_wait,
    )


# --- each command's typed options ------------------------------------------------------------


def command_of(args: argparse.Namespace) -> Command:
    """The handler of the parsed command, bound to its typed options."""
    return _BIND[args.command](args)


def _pipeline(args: argparse.Namespace) -> Command:
    options = PipelineOptions(phase_flags(args), _steps(args), target=args.to)
    return partial(pipeline.pipeline, options)


def _rollback(args: argparse.Namespace) -> Command:
    options = RollbackOptions(args.config, args.to, args.steps, enforce_lint=not args.force)
    return partial(rollback.rollback, options)


def _plan(args: argparse.Namespace) -> Command:
    return partial(reading.plan, PlanOptions(args.config, args.to, args.steps))


def _fingerprint(args: argparse.Namespace) -> Command:
    diff = (args.diff[0], args.diff[1]) if args.diff else None
    return partial(reading.fingerprint_command, FingerprintOptions(diff))


def _preflight(args: argparse.Namespace) -> Command:
    return partial(phase_jobs.preflight, PreflightOptions(phase_flags(args), target=args.to))


def _backup(args: argparse.Namespace) -> Command:
    return partial(phase_jobs.backup, phase_flags(args))


def _restore(args: argparse.Namespace) -> Command:
    options = RestoreOptions(
        phase_flags(args), args.backup, args.yes, allow_missing_manifest=args.allow_missing_manifest
    )
    return partial(phase_jobs.restore_backup, options)


def _postflight(args: argparse.Namespace) -> Command:
    return partial(phase_jobs.postflight, PostflightOptions(phase_flags(args), target=args.to))


def _baseline(args: argparse.Namespace) -> Command:
    options = BaselineOptions(args.baseline_version, args.from_golang_migrate)
    return partial(adopt.baseline, options)


def _force(args: argparse.Namespace) -> Command:
    return partial(adopt.force, ForceOptions(args.force_version))


def _verify(args: argparse.Namespace) -> Command:
    options = VerifyOptions(
        config=args.config,
        directory=Path(args.directory) if args.directory else None,
        markdown=args.markdown,
        slow_migration_seconds=args.slow_migration_seconds,
        setup=tuple(args.setup or ()),
    )
    from migrate_safe.commands import ci  # the linter and verifier load only for their commands

    return partial(ci.verify, options)


def _lint(args: argparse.Namespace) -> Command:
    options = LintCommandOptions(
        config=args.config,
        directory=Path(args.directory) if args.directory else None,
        format=args.format,
        pg_version=args.pg_version,
        strict=args.strict,
        harness_timeouts=not args.no_harness_timeouts,
    )
    from migrate_safe.commands import ci

    return partial(ci.lint, options)


def _wait(args: argparse.Namespace) -> Command:
    return partial(wait.wait, WaitOptions(args.wait_version, args.timeout, args.interval))


def _demo(args: argparse.Namespace) -> Command:
    return partial(demo.demo, DemoOptions(keep=args.keep))


_BIND: dict[str, Callable[[argparse.Namespace], Command]] = {
    "apply": _pipeline,
    "run": _pipeline,
    "rollback": _rollback,
    "status": lambda _args: reading.status,
    "plan": _plan,
    "baseline": _baseline,
    "force": _force,
    "repair": lambda _args: adopt.repair,
    "demo": _demo,
    "preflight": _preflight,
    "backup": _backup,
    "restore": _restore,
    "postflight": _postflight,
    "fingerprint": _fingerprint,
    "verify": _verify,
    "lint": _lint,
    "wait": _wait,
}


def _steps(args: argparse.Namespace) -> Steps:
    if args.command == "run":
        return Steps(enforce_preflight=not args.force, backup=not args.no_backup, postflight=True)
    return Steps(
        preflight=not args.skip_preflight and not args.dry_run,
        enforce_preflight=not args.force,
        backup=not args.no_backup and not args.dry_run,
        dry_run=args.dry_run,
    )


def phase_flags(args: argparse.Namespace) -> PhaseFlags:
    """The preflight and backup flags of the commands that have them (see _pipeline_flags)."""
    preflight = PreflightFlags()
    if args.command in ("apply", "run", "preflight"):
        preflight = PreflightFlags(
            long_transaction_seconds=args.long_transaction_seconds,
            idle_in_transaction_seconds=args.idle_in_transaction_seconds,
            replication_lag_seconds=args.replication_lag_seconds,
            fail_on=tuple(args.fail_on or ()),
            warn_on=tuple(args.warn_on or ()),
        )
    backup = BackupFlags()
    if args.command in ("apply", "run", "backup", "restore"):
        backup = BackupFlags(
            dir=Path(args.backup_dir) if args.backup_dir else None,
            format=args.backup_format,
            retention=args.retention,
            lock_wait=args.backup_lock_wait,
        )
    expects = args.command in ("apply", "run", "postflight")
    return PhaseFlags(
        config=args.config,
        preflight=preflight,
        backup=backup,
        expected_fingerprint=args.expected_fingerprint if expects else None,
        expected_plan_hash=args.expect_plan_hash if args.command in ("apply", "run") else None,
    )


def _termination_log(value: str | None) -> Path | None:
    if value is None:
        return default_termination_log()
    return None if value.lower() in ("", "none") else Path(value)


def run_operator(args: argparse.Namespace) -> int:
    """The operator layer, imported only to run it: the harness never loads kopf."""
    from migrate_safe.k8s.main import OperatorOptions, run

    return run(
        OperatorOptions(
            namespaces=tuple(args.namespace or ()),
            metrics_port=args.metrics_port,
            liveness_port=args.liveness_port,
            standalone=args.standalone,
            peering=args.peering,
            priority=args.priority,
            fleets=args.fleets,
            verbose=args.verbose,
        )
    )


def main(argv: list[str] | None = None) -> int:
    redact = Redactor()
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(translate_seed_flags(arguments))
        if args.command == OPERATOR:
            return run_operator(args)
        settings = settings_from(args)
        command = command_of(args)
        rehearsal = args.command == "apply" and args.dry_run
        report = Reporter(
            "rehearse" if rehearsal else args.command,
            settings.log_dir,
            settings.redact,
            settings.termination_log,
            json_output=args.json,
            quiet=args.quiet,
        )
    except ConfigError as error:
        redact.add_secret(os.environ.get("DATABASE_URL"))
        print(f"migrate-safe: error: {redact(error.message)}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    return run(command, settings, report)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM. A KeyboardInterrupt, so psycopg cancels the running statement in the
    server exactly as it does for Ctrl-C, and the engine's transaction rolls back."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@contextmanager
def _signals_raise() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        # One-shot: the interrupted run's report must be written even if a second signal comes.
        for other in _STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {number: signal.signal(number, stop) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(command: Command, settings: Settings, report: Reporter) -> int:
    """Run a command; whatever happens, its report is finished once, with an exit code."""
    done = RunReport()
    report.event("run_started", version=__version__)
    failure_code = int(FAILURE_CODE.get(report.command, ExitCode.MIGRATION_FAILED))
    with _signals_raise():
        try:
            if report.log_problem:
                raise ConfigError(report.log_problem)
            command(settings, report, done)
        except Interrupted as stop:
            message = f"interrupted by {stop.name}; {_left_behind(done)}"
            code = 128 + stop.signum
            return _fail(report, done, code, ErrorReport(message, {}, True), "interrupted")
        except MigrateSafeError as error:
            failure = ErrorReport(error.message, error.details, error.transient)
            return _fail(report, done, int(error.exit_code), failure)
        except psycopg.Error as error:
            message = f"database error: {str(error).strip()} (SQLSTATE {error.sqlstate})"
            state: dict[str, object] = {"sqlstate": error.sqlstate} if error.sqlstate else {}
            failure = ErrorReport(message, state, transient_sqlstate(error.sqlstate))
            return _fail(report, done, failure_code, failure)
        except Exception as error:  # a defect of migrate-safe: still a report, not a traceback
            message = f"unexpected error: {type(error).__name__}: {error}"
            trace = {"traceback": traceback.format_exc()}
            return _fail(report, done, failure_code, ErrorReport(message, trace))
    report.finish(0, "succeeded", done)
    return 0


def _left_behind(done: RunReport) -> str:
    """What an interrupted run leaves, from the ledger as read back after the interruption."""
    if done.ledger is None:
        return "nothing was changed by this run"
    dirty = done.ledger.dirty_versions
    current = done.ledger.current_version
    where = f"the ledger is at version {current}" if current else "the ledger is empty"
    if dirty:
        return (
            f"{where}; version {', '.join(map(str, dirty))} is dirty (a no-transaction "
            "migration stopped midway): check it, then `migrate-safe force` or `repair`"
        )
    return f"{where}; the migration in progress was rolled back"


def _fail(
    report: Reporter, done: RunReport, code: int, error: ErrorReport, outcome: str = "failed"
) -> int:
    report.progress(f"migrate-safe: error: {error.message}")
    done.error = error
    report.finish(code, outcome, done)
    return code
