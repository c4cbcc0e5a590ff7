"""Project-wide lint settings from a TOML file (`migrate-safe.toml` by default):

[lint]
disable = ["MS802"]          # reported as suppressed, never counted
small_table_rows = 10000     # against a database: a table this small makes scans,
small_table_bytes = 8388608  #   rewrites and index builds on it info (both limits hold)
[lint.severity]
MS102 = "error"              # error | warning | info
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from migrate_safe.errors import ConfigError
from migrate_safe.lint.model import Severity
from migrate_safe.lint.registry import RULES
from migrate_safe.settings_file import DEFAULT_FILE, load_settings_file


@dataclass(frozen=True)
class SizeLimits:
    """Up to these sizes (estimated rows and bytes with indexes and TOAST, both must hold) a
    scan, rewrite or index build takes milliseconds, so the rules that only bite on a table
    with rows report info there. 10,000 rows build an index in a few milliseconds; 8 MiB is
    read from cache in about as long."""

    rows: int = 10_000
    bytes: int = 8 * 1024 * 1024

    def exceeded_by(self, rows: int, size_bytes: int) -> str:
        """Which limit a table breaks (`small_table_rows = N`), or "" when it is small."""
        over = []
        if rows > self.rows:
            over.append(f"small_table_rows = {self.rows}")
        if size_bytes > self.bytes:
            over.append(f"small_table_bytes = {self.bytes}")
        return " and ".join(over)


@dataclass(frozen=True)
class LintConfig:
    disabled: frozenset[str] = frozenset()
    severity: Mapping[str, Severity] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = str(DEFAULT_FILE)
    limits: SizeLimits = SizeLimits()

    def with_severity(self, rule: str, severity: Severity) -> LintConfig:
        """A copy with one more override, e.g. MS703 as a warning under --allow-missing-down."""
        return replace(self, severity=MappingProxyType({**self.severity, rule: severity}))


def load_lint_config(path: Path | None) -> LintConfig:
    """The [lint] table of the settings file (`--config`, else ./migrate-safe.toml when it
    exists). Unknown rule ids and severities are config errors, so a typo never silently
    disables nothing."""
    return lint_config_from_table(load_settings_file(path).get("lint", {}), path or DEFAULT_FILE)


def lint_config_from_table(section: object, path: Path) -> LintConfig:
    """A LintConfig from an already-parsed `[lint]` table (e.g. from the settings file)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [lint] must be a table")
    unknown = set(section) - KEYS
    if unknown:
        raise ConfigError(
            f"{path}: [lint] has unknown keys {sorted(unknown)} (known: {', '.join(sorted(KEYS))})"
        )
    disabled = _rule_ids(section.get("disable", []), path)
    severity = _severities(section.get("severity", {}), path)
    defaults = SizeLimits()
    limits = SizeLimits(
        _count(section, "small_table_rows", defaults.rows, path),
        _count(section, "small_table_bytes", defaults.bytes, path),
    )
    return LintConfig(frozenset(disabled), MappingProxyType(severity), str(path), limits)


KEYS = {"disable", "severity", "small_table_rows", "small_table_bytes"}


def _count(section: dict[str, object], key: str, default: int, path: Path) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{path}: [lint] {key} = {value!r}: use a whole number, 0 or more "
            "(0: only empty tables count as small)"
        )
    return value


def _rule_ids(value: object, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{path}: [lint] disable must be a list of rule ids, e.g. ["MS102"]')
    for rule in value:
        _require_known(rule, path)
    return list(value)


def _severities(value: object, path: Path) -> dict[str, Severity]:
    if not isinstance(value, dict):
        raise ConfigError(
            f'{path}: [lint.severity] must map rule ids to "error", "warning" or "info"'
        )
    choices = {s.value: s for s in Severity}
    result: dict[str, Severity] = {}
    for rule, level in value.items():
        _require_known(rule, path)
        if level not in choices:
            raise ConfigError(
                f"{path}: [lint.severity] {rule} = {level!r}: use {', '.join(choices)}"
            )
        result[rule] = choices[level]
    return result


def _require_known(rule: str, path: Path) -> None:
    # Importing the rules fills RULES; here, so that a [lint] table without rule ids (most
    # runs, and every apply that skips preflight) does not load them.
    import migrate_safe.lint.rules  # noqa: F401

    if rule not in RULES:
        raise ConfigError(f"{path}: unknown lint rule {rule!r} (see docs/lint-rules.md)")
