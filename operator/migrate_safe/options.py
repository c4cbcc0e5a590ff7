"""Phase options from flags and the settings file (flags win over the file)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from migrate_safe.backup import FORMATS
from migrate_safe.errors import ConfigError
from migrate_safe.lint import LintConfig, Severity, lint_config_from_table
from migrate_safe.pipeline import PhaseOptions
from migrate_safe.preflight import FAIL, WARN, PreflightConfig
from migrate_safe.settings_file import (
    DEFAULT_FILE,
    above_zero,
    load_settings_file,
    not_empty,
    one_of,
    read_section,
    setting,
)

T = TypeVar("T")
_PREFLIGHT = PreflightConfig()
_PHASE = PhaseOptions()


@dataclass(frozen=True)
class PreflightTable:
    """`[preflight]`: thresholds in seconds and severity overrides (flags win)."""

    long_transaction_seconds: float = setting(_PREFLIGHT.long_transaction_seconds, above_zero)
    idle_in_transaction_seconds: float = setting(_PREFLIGHT.idle_in_transaction_seconds, above_zero)
    blocked_seconds: float = setting(_PREFLIGHT.blocked_seconds, above_zero)
    replication_lag_seconds: float = setting(_PREFLIGHT.replication_lag_seconds, above_zero)
    fail_on: tuple[str, ...] = setting(())
    warn_on: tuple[str, ...] = setting(())


@dataclass(frozen=True)
class BackupTable:
    """`[backup]`: where and how backups are taken (flags win)."""

    dir: str = setting(str(_PHASE.backup_dir), not_empty)
    format: str = setting(_PHASE.backup_format, one_of(*FORMATS))
    retention: int = setting(_PHASE.retention, above_zero)
    lock_wait_seconds: float = setting(_PHASE.backup_lock_wait, above_zero)


def _flag_or(args: argparse.Namespace, flag: str, from_file: T) -> T:
    """The flag when given, else the settings file's value (or the table's default)."""
    value: T | None = getattr(args, flag, None)
    return from_file if value is None else value


def preflight_config(args: argparse.Namespace, file: dict[str, Any]) -> PreflightConfig:
    table = read_section(file, "preflight", PreflightTable, getattr(args, "config", None))
    fail_on = [*table.fail_on, *(getattr(args, "fail_on", None) or [])]
    warn_on = [*table.warn_on, *(getattr(args, "warn_on", None) or [])]
    PreflightConfig.validate_names(fail_on, "--fail-on / [preflight] fail_on")
    PreflightConfig.validate_names(warn_on, "--warn-on / [preflight] warn_on")
    both = set(fail_on) & set(warn_on)
    if both:
        raise ConfigError(f"check(s) {', '.join(sorted(both))} both in fail_on and warn_on")
    return PreflightConfig(
        long_transaction_seconds=_flag_or(
            args, "long_transaction_seconds", table.long_transaction_seconds
        ),
        idle_in_transaction_seconds=_flag_or(
            args, "idle_in_transaction_seconds", table.idle_in_transaction_seconds
        ),
        blocked_seconds=table.blocked_seconds,
        replication_lag_seconds=_flag_or(
            args, "replication_lag_seconds", table.replication_lag_seconds
        ),
        severity={**{name: FAIL for name in fail_on}, **{name: WARN for name in warn_on}},
    )


def phase_options(args: argparse.Namespace) -> PhaseOptions:
    origin: Path | None = getattr(args, "config", None)
    file = load_settings_file(origin)
    backup = read_section(file, "backup", BackupTable, origin)
    return PhaseOptions(
        preflight=preflight_config(args, file),
        backup_dir=_flag_or(args, "backup_dir", Path(backup.dir)),
        backup_format=_flag_or(args, "backup_format", backup.format),
        retention=_flag_or(args, "retention", backup.retention),
        backup_lock_wait=_flag_or(args, "backup_lock_wait", backup.lock_wait_seconds),
        expected_fingerprint=getattr(args, "expected_fingerprint", None),
        expected_plan_hash=getattr(args, "expect_plan_hash", None),
        lint=lint_config(args, file),
    )


def lint_config(args: argparse.Namespace, file: dict[str, Any]) -> LintConfig:
    config = lint_config_from_table(
        file.get("lint", {}), getattr(args, "config", None) or DEFAULT_FILE
    )
    if getattr(args, "allow_missing_down", False):
        config = config.with_severity("MS703", Severity.WARNING)  # an up without a down
    return config
