"""The DatabaseMigration spec as a typed value, parsed once per pass.

The CRD (crds/databasemigration.yaml) is the only source of defaults: the API server fills them
in before the operator sees an object, so a field that has a default there is required here,
and a field without one is optional. A unit test holds the two together, field by field.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

# Phase names a spec may give a Job template for (spec.phases.<phase>).
TEMPLATE_PHASES = ("preflight", "plan", "backup", "apply", "postflight", "rollback")


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class Database:
    secret_ref: SecretRef
    ledger_schema: str


@dataclass(frozen=True)
class ConfigMapRef:
    name: str


@dataclass(frozen=True)
class ImageSource:
    name: str
    path: str
    pull_policy: str | None = None


@dataclass(frozen=True)
class Source:
    """Exactly one kind is set (a CEL rule of the CRD says so)."""

    config_maps: tuple[ConfigMapRef, ...] = ()
    image: ImageSource | None = None
    inline: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Approval:
    plan_hash: str | None = None


@dataclass(frozen=True)
class Preflight:
    long_transaction_seconds: int
    retry_interval: str
    fail_on: tuple[str, ...] = ()
    warn_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backup:
    enabled: bool
    format: str
    retention: int
    persistent_volume_claim: str | None = None


@dataclass(frozen=True)
class Apply:
    lock_timeout: str
    lock_timeout_max: str
    statement_timeout: str
    lock_retries: int


@dataclass(frozen=True)
class Postflight:
    enabled: bool
    expected_fingerprint: str | None = None


@dataclass(frozen=True)
class Rollback:
    policy: str  # Auto | Manual | Never
    restore_backup_on_failure: bool
    approved_target_version: int | None = None


@dataclass(frozen=True)
class JobTemplate:
    image: str | None = None
    image_pull_policy: str | None = None
    service_account_name: str | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] | None = None
    resources: Mapping[str, Any] | None = None

    def over(self, base: JobTemplate) -> JobTemplate:
        """This template's settings, and `base`'s where this one says nothing."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        merged = {k: v if v is not None else getattr(base, k) for k, v in values.items()}
        return JobTemplate(**merged)


@dataclass(frozen=True)
class Phases:
    preflight: JobTemplate | None = None
    plan: JobTemplate | None = None
    backup: JobTemplate | None = None
    apply: JobTemplate | None = None
    postflight: JobTemplate | None = None
    rollback: JobTemplate | None = None


@dataclass(frozen=True)
class DatabaseMigrationSpec:
    database: Database
    source: Source
    mode: str  # Apply | Plan
    preflight: Preflight
    backup: Backup
    apply: Apply
    postflight: Postflight
    rollback: Rollback
    target_version: int | None = None
    approval: Approval = field(default_factory=Approval)
    job_template: JobTemplate = field(default_factory=JobTemplate)
    phases: Phases = field(default_factory=Phases)

    def template(self, phase: str) -> JobTemplate:
        """The Job settings of a phase: phases.<phase> over the shared jobTemplate."""
        own = getattr(self.phases, phase, None) if phase in TEMPLATE_PHASES else None
        return own.over(self.job_template) if own is not None else self.job_template


class SpecError(ValueError):
    """The spec lacks a field the CRD defaults (an old CRD?) or has one of the wrong type."""


def parse_spec(spec: Mapping[str, Any]) -> DatabaseMigrationSpec:
    result: DatabaseMigrationSpec = _parse(DatabaseMigrationSpec, spec, "spec")
    return result


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _hints(cls: type[Any]) -> dict[str, object]:
    """A spec class's field types, resolved once: resolving the string annotations costs
    milliseconds, and every pass parses a spec."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


_HINTS: dict[type[Any], dict[str, object]] = {}


def _parse(cls: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected an object")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for spec_field in fields(cls):
        key = camel(spec_field.name)
        if key in data and data[key] is not None:
            values[spec_field.name] = _value(hints[spec_field.name], data[key], f"{where}.{key}")
        elif spec_field.default is MISSING and spec_field.default_factory is MISSING:
            raise SpecError(f"{where}.{key}: missing (is the DatabaseMigration CRD up to date?)")
    return cls(**values)


def _value(hint: Any, raw: Any, where: str) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if is_dataclass(hint):
        return _parse(hint, raw, where)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(raw, list):
            raise SpecError(f"{where}: expected a list")
        return tuple(_value(item, one, f"{where}[{i}]") for i, one in enumerate(raw))
    if origin is Mapping:
        if not isinstance(raw, Mapping):
            raise SpecError(f"{where}: expected an object")
        return dict(raw)
    if hint is bool and not isinstance(raw, bool):
        raise SpecError(f"{where}: expected true or false")
    if hint is int and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise SpecError(f"{where}: expected an integer")
    if hint is str and not isinstance(raw, str):
        raise SpecError(f"{where}: expected a string")
    return raw
