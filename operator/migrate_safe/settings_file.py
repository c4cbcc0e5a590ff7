"""The optional settings file (`migrate-safe.toml`): one table per concern, flags win."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from migrate_safe.errors import ConfigError

DEFAULT_FILE = Path("migrate-safe.toml")


def load_settings_file(path: Path | None) -> dict[str, Any]:
    """The file's tables; an explicit path must exist, the default one may not."""
    target = path or DEFAULT_FILE
    if not target.exists():
        if path is not None:
            raise ConfigError(f"--config {path}: no such file")
        return {}
    try:
        return tomllib.loads(target.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{target}: not valid TOML: {error}") from None


def section(
    settings: dict[str, Any], name: str, known: set[str], origin: Path | None
) -> dict[str, Any]:
    """One table of the file, refusing keys nobody reads (a typo would silently do nothing)."""
    table = settings.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{origin or DEFAULT_FILE}: [{name}] must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{origin or DEFAULT_FILE}: [{name}] unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    return table
