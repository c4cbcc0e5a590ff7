"""Phase options from flags and the settings file (flags win over the file)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from migrate_safe.errors import ConfigError
from migrate_safe.lint import LintConfig, Severity, lint_config_from_table
from migrate_safe.pipeline import PhaseOptions
from migrate_safe.preflight import FAIL, WARN, PreflightConfig
from migrate_safe.settings_file import DEFAULT_FILE, load_settings_file, section

PREFLIGHT_KEYS = {
    "long_transaction_seconds",
    "idle_in_transaction_seconds",
    "blocked_seconds",
    "replication_lag_seconds",
    "fail_on",
    "warn_on",
}
BACKUP_KEYS = {"dir", "format", "retention", "lock_wait_seconds"}


def _pick(
    args: argparse.Namespace, flag: str, table: dict[str, Any], key: str, default: Any
) -> Any:
    value = getattr(args, flag, None)
    if value is not None:
        return value
    return table.get(key, default)


def preflight_config(args: argparse.Namespace, file: dict[str, Any]) -> PreflightConfig:
    origin = getattr(args, "config", None)
    table = section(file, "preflight", PREFLIGHT_KEYS, origin)
    defaults = PreflightConfig()
    fail_on = list(table.get("fail_on", [])) + list(getattr(args, "fail_on", None) or [])
    warn_on = list(table.get("warn_on", [])) + list(getattr(args, "warn_on", None) or [])
    PreflightConfig.validate_names(fail_on, "--fail-on / [preflight] fail_on")
    PreflightConfig.validate_names(warn_on, "--warn-on / [preflight] warn_on")
    both = set(fail_on) & set(warn_on)
    if both:
        raise ConfigError(f"check(s) {', '.join(sorted(both))} both in fail_on and warn_on")
    return PreflightConfig(
        long_transaction_seconds=float(
            _pick(args, "long_transaction_seconds", table, "long_transaction_seconds",
                  defaults.long_transaction_seconds)
        ),
        idle_in_transaction_seconds=float(
            _pick(args, "idle_in_transaction_seconds", table, "idle_in_transaction_seconds",
                  defaults.idle_in_transaction_seconds)
        ),
        blocked_seconds=float(table.get("blocked_seconds", defaults.blocked_seconds)),
        replication_lag_seconds=float(
            _pick(args, "replication_lag_seconds", table, "replication_lag_seconds",
                  defaults.replication_lag_seconds)
        ),
        severity={**{name: FAIL for name in fail_on}, **{name: WARN for name in warn_on}},
    )  # fmt: skip


def phase_options(args: argparse.Namespace) -> PhaseOptions:
    origin: Path | None = getattr(args, "config", None)
    file = load_settings_file(origin)
    backup = section(file, "backup", BACKUP_KEYS, origin)
    defaults = PhaseOptions()
    retention = int(_pick(args, "retention", backup, "retention", defaults.retention))
    if retention < 1:
        raise ConfigError("--retention must be at least 1")
    return PhaseOptions(
        preflight=preflight_config(args, file),
        backup_dir=Path(_pick(args, "backup_dir", backup, "dir", defaults.backup_dir)),
        backup_format=str(_pick(args, "backup_format", backup, "format", defaults.backup_format)),
        retention=retention,
        backup_lock_wait=float(
            _pick(args, "backup_lock_wait", backup, "lock_wait_seconds", defaults.backup_lock_wait)
        ),
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
