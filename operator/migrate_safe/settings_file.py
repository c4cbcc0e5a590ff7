"""The optional settings file (`migrate-safe.toml`): one table per concern, flags win.

Each table is declared where it is read, as a frozen dataclass whose fields are its keys and
whose annotations are their types (`read_section`). A value of the wrong type or one that means
nothing (a zero threshold) is a config error naming the file, the table, the key, what was
expected and what was found, so `fail_on = "SchemaDrift"` is never split into characters.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin, get_type_hints

from migrate_safe.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_FILE = Path("migrate-safe.toml")
# Every table some command reads; anything else is a typo that would silently do nothing.
KNOWN_TABLES = frozenset({"preflight", "backup", "lint", "verify"})

Schema = TypeVar("Schema", bound="DataclassInstance")
# The file's tables as TOML gives them: checked key by key where each is read (`read_section`).
SettingsFile = Mapping[str, object]
# What is wrong with a value of the right type ("must be above zero"), or None.
ValueCheck = Callable[[Any], str | None]


def load_settings_file(path: Path | None) -> SettingsFile:
    """The file's tables; an explicit path must exist, the default one may not."""
    target = path or DEFAULT_FILE
    if not target.exists():
        if path is not None:
            raise ConfigError(f"--config {path}: no such file")
        return {}
    try:
        settings = tomllib.loads(target.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{target}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{target}: cannot read: {error.strerror}") from None
    unknown = sorted(set(settings) - KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"{target}: unknown table(s) or top-level key(s) {', '.join(unknown)} "
            f"(known tables: {', '.join(f'[{name}]' for name in sorted(KNOWN_TABLES))})"
        )
    return settings


def section(
    settings: SettingsFile, name: str, known: set[str], origin: Path | None
) -> Mapping[str, object]:
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


def setting(default: object, check: ValueCheck | None = None) -> Any:
    """A key of a section schema, with what its type alone cannot say (e.g. `above_zero`)."""
    return field(default=default, metadata={"check": check})


def above_zero(value: float) -> str | None:
    """Thresholds, counts and waits where zero (or less, or infinity) means nothing."""
    if not math.isfinite(value):
        return "must be a finite number"
    return None if value > 0 else "must be above zero"


def not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def one_of(*choices: str) -> ValueCheck:
    def check(value: str) -> str | None:
        return None if value in choices else f"use one of {', '.join(map(_shown, choices))}"

    return check


def read_section(
    settings: SettingsFile, name: str, schema: type[Schema], origin: Path | None
) -> Schema:
    """Table `name` of the file as a `schema` instance: unknown keys, values of the wrong type
    and values its checks refuse are config errors. Absent keys keep the schema's defaults."""
    table = section(settings, name, {key.name for key in fields(schema)}, origin)
    types = get_type_hints(schema)
    where = f"{origin or DEFAULT_FILE}: [{name}]"
    values = {
        key.name: _checked(
            table[key.name], types[key.name], key.metadata.get("check"), f"{where} {key.name}"
        )
        for key in fields(schema)
        if key.name in table
    }
    return replace(schema(), **values)


@dataclass(frozen=True)
class _Kind:
    """A TOML value type a key can declare: how to recognise it, name it and convert it."""

    accepts: Callable[[object], bool]
    described: str
    convert: Callable[[Any], object] = lambda value: value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KINDS: dict[object, _Kind] = {
    float: _Kind(_is_number, "a number", float),
    int: _Kind(lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    str: _Kind(lambda v: isinstance(v, str), "a string"),
    bool: _Kind(lambda v: isinstance(v, bool), "true or false"),
    tuple[str, ...]: _Kind(
        lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
        'a list of strings, e.g. ["SchemaDrift"]',
        tuple,
    ),
}


def _checked(value: object, declared: object, check: ValueCheck | None, where: str) -> object:
    kind = _KINDS[_without_none(declared)]
    if not kind.accepts(value):
        raise ConfigError(f"{where} = {_shown(value)}: expected {kind.described}")
    converted = kind.convert(value)
    problem = check(converted) if check else None
    if problem:
        raise ConfigError(f"{where} = {_shown(value)}: {problem}")
    return converted


def _without_none(declared: object) -> object:
    """`float | None` → float: None stands for "not in the file"; TOML has no null."""
    if get_origin(declared) is UnionType:
        (kind,) = (arg for arg in get_args(declared) if arg is not NoneType)
        return kind
    return declared


def _shown(value: object) -> str:
    """A value the way it looks in TOML (strings quoted), cut short if long."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, nan: TOML's spelling, not JSON's Infinity
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
