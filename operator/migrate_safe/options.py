"""What each command is asked to do: typed options, built from the command line by `cli.py`
(the only module that sees argparse), and their settings-file parts resolved here (flags win
over the file, the file over the defaults).

Reading the settings file happens when a command runs, not when its flags are parsed, so a
bad file is a failed run with a report (and a termination message), like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from migrate_safe.backup import FORMATS
from migrate_safe.errors import ConfigError
from migrate_safe.lint import LintConfig, Severity, lint_config_from_table
from migrate_safe.outcome import FAIL, WARN
from migrate_safe.preflight import PreflightConfig
from migrate_safe.settings_file import (
    DEFAULT_FILE,
    SettingsFile,
    above_zero,
    load_settings_file,
    not_empty,
    one_of,
    read_section,
    setting,
)

T = TypeVar("T")
_PREFLIGHT = PreflightConfig()


# --- flags shared by the phase commands ------------------------------------------------------


@dataclass(frozen=True)
class PreflightFlags:
    """Preflight thresholds (seconds) and severity overrides; None: not given."""

    long_transaction_seconds: float | None = None
    idle_in_transaction_seconds: float | None = None
    replication_lag_seconds: float | None = None
    fail_on: tuple[str, ...] = ()
    warn_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackupFlags:
    """Where and how backups are taken; None: not given."""

    dir: Path | None = None
    format: str | None = None
    retention: int | None = None
    lock_wait: float | None = None


@dataclass(frozen=True)
class PhaseFlags:
    """The flags of the phases around apply, and the settings file they fall back to."""

    config: Path | None = None  # --config; None: ./migrate-safe.toml when present
    preflight: PreflightFlags = field(default_factory=PreflightFlags)
    backup: BackupFlags = field(default_factory=BackupFlags)
    expected_fingerprint: str | None = None
    expected_plan_hash: str | None = None


@dataclass(frozen=True)
class PhaseOptions:
    """The phases' options once flags and the settings file are resolved."""

    preflight: PreflightConfig = field(default_factory=PreflightConfig)
    backup_dir: Path = Path("backups/migrations")
    backup_format: str = "custom"
    retention: int = 5
    backup_lock_wait: float = 60.0
    expected_fingerprint: str | None = None
    expected_plan_hash: str | None = None
    lint: LintConfig = field(default_factory=LintConfig)


# --- each command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Steps:
    """Which phases around apply a command runs."""

    preflight: bool = True
    enforce_preflight: bool = True  # False with --force: failures are reported, not fatal
    backup: bool = True
    postflight: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class PipelineOptions:
    """apply, run and the rehearsal (apply --dry-run)."""

    phases: PhaseFlags
    steps: Steps
    target: int | None = None


@dataclass(frozen=True)
class RollbackOptions:
    config: Path | None = None
    target: int | None = None
    steps: int | None = None  # None with no target: one version
    enforce_lint: bool = True  # False with --force


@dataclass(frozen=True)
class PlanOptions:
    config: Path | None = None
    target: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class PreflightOptions:
    phases: PhaseFlags
    target: int | None = None


@dataclass(frozen=True)
class RestoreOptions:
    phases: PhaseFlags
    backup: str = "latest"  # a file, or the latest backup of the backup directory
    confirmed: bool = False  # --yes: restore over a database that has objects
    allow_missing_manifest: bool = False


@dataclass(frozen=True)
class PostflightOptions:
    phases: PhaseFlags
    target: int | None = None


@dataclass(frozen=True)
class FingerprintOptions:
    diff: tuple[str, str] | None = None  # two database URLs to compare


@dataclass(frozen=True)
class VerifyOptions:
    config: Path | None = None
    directory: Path | None = None  # None: --migrations-dir
    markdown: bool = False
    slow_migration_seconds: float = 300.0
    setup: tuple[Path, ...] = ()  # empty: [verify] setup of the settings file


@dataclass(frozen=True)
class LintCommandOptions:
    config: Path | None = None
    directory: Path | None = None  # None: --migrations-dir
    format: str = "text"
    pg_version: int | None = None  # None: the server's when a database is given, else 15
    strict: bool = False
    harness_timeouts: bool = True


@dataclass(frozen=True)
class WaitOptions:
    version: int
    timeout: float = 300.0
    interval: float = 2.0


@dataclass(frozen=True)
class BaselineOptions:
    version: int | None = None
    golang_migrate_table: str | None = None  # take the version from golang-migrate's table


@dataclass(frozen=True)
class ForceOptions:
    version: int


@dataclass(frozen=True)
class DemoOptions:
    keep: bool = False


# --- the settings file -------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightTable:
    """`[preflight]`: thresholds in seconds and severity overrides (flags win)."""

    long_transaction_seconds: float = setting(_PREFLIGHT.long_transaction_seconds, above_zero)
    idle_in_transaction_seconds: float = setting(_PREFLIGHT.idle_in_transaction_seconds, above_zero)
    blocked_seconds: float = setting(_PREFLIGHT.blocked_seconds, above_zero)
    replication_lag_seconds: float = setting(_PREFLIGHT.replication_lag_seconds, above_zero)
    fail_on: tuple[str, ...] = setting(())
    warn_on: tuple[str, ...] = setting(())


_PHASE = PhaseOptions()


@dataclass(frozen=True)
class BackupTable:
    """`[backup]`: where and how backups are taken (flags win)."""

    dir: str = setting(str(_PHASE.backup_dir), not_empty)
    format: str = setting(_PHASE.backup_format, one_of(*FORMATS))
    retention: int = setting(_PHASE.retention, above_zero)
    lock_wait_seconds: float = setting(_PHASE.backup_lock_wait, above_zero)


def _given_or(flag: T | None, from_file: T) -> T:
    """The flag when given, else the settings file's value (or the table's default)."""
    return from_file if flag is None else flag


def preflight_config(
    flags: PreflightFlags, file: SettingsFile, origin: Path | None
) -> PreflightConfig:
    table = read_section(file, "preflight", PreflightTable, origin)
    fail_on = [*table.fail_on, *flags.fail_on]
    warn_on = [*table.warn_on, *flags.warn_on]
    PreflightConfig.validate_names(fail_on, "--fail-on / [preflight] fail_on")
    PreflightConfig.validate_names(warn_on, "--warn-on / [preflight] warn_on")
    both = set(fail_on) & set(warn_on)
    if both:
        raise ConfigError(f"check(s) {', '.join(sorted(both))} both in fail_on and warn_on")
    return PreflightConfig(
        long_transaction_seconds=_given_or(
            flags.long_transaction_seconds, table.long_transaction_seconds
        ),
        idle_in_transaction_seconds=_given_or(
            flags.idle_in_transaction_seconds, table.idle_in_transaction_seconds
        ),
        blocked_seconds=table.blocked_seconds,
        replication_lag_seconds=_given_or(
            flags.replication_lag_seconds, table.replication_lag_seconds
        ),
        severity={**{name: FAIL for name in fail_on}, **{name: WARN for name in warn_on}},
    )


def phase_options(flags: PhaseFlags, *, allow_missing_down: bool = False) -> PhaseOptions:
    """The phases' options: flags, else the settings file, else the defaults."""
    file = load_settings_file(flags.config)
    backup = read_section(file, "backup", BackupTable, flags.config)
    return PhaseOptions(
        preflight=preflight_config(flags.preflight, file, flags.config),
        backup_dir=_given_or(flags.backup.dir, Path(backup.dir)),
        backup_format=_given_or(flags.backup.format, backup.format),
        retention=_given_or(flags.backup.retention, backup.retention),
        backup_lock_wait=_given_or(flags.backup.lock_wait, backup.lock_wait_seconds),
        expected_fingerprint=flags.expected_fingerprint,
        expected_plan_hash=flags.expected_plan_hash,
        lint=lint_config(flags.config, allow_missing_down=allow_missing_down, file=file),
    )


def lint_config(
    config: Path | None, *, allow_missing_down: bool = False, file: SettingsFile | None = None
) -> LintConfig:
    """`[lint]` of the settings file; `file`: the file already read, if it was."""
    table = (load_settings_file(config) if file is None else file).get("lint", {})
    lint = lint_config_from_table(table, config or DEFAULT_FILE)
    if allow_missing_down:
        lint = lint.with_severity("MS703", Severity.WARNING)  # an up without a down
    return lint
