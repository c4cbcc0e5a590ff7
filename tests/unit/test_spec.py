"""The typed DatabaseMigration spec and the CRD say the same thing: every field of one is a
field of the other, and a field is required in the model exactly when the CRD defaults it."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from migrate_safe.k8s.spec import (
    DatabaseMigrationSpec,
    JobTemplate,
    SpecError,
    camel,
    parse_spec,
)
from tests.unit.crd_defaults import defaulted, spec_schema

MINIMAL = {"database": {"secretRef": {"name": "db"}}, "source": {"configMaps": [{"name": "m"}]}}


def _dataclass_of(hint: Any) -> Any:
    if get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    return hint if is_dataclass(hint) else None


def _pairs(cls: Any, schema: dict[str, Any], where: str) -> list[tuple[str, Any, Any, bool]]:
    """(path, model field, its CRD schema, whether the CRD always has it: required or defaulted)"""
    hints = get_type_hints(cls)
    found = []
    for model_field in fields(cls):
        key = camel(model_field.name)
        sub = (schema.get("properties") or {}).get(key)
        always = sub is not None and ("default" in sub or key in schema.get("required", []))
        found.append((f"{where}.{key}", model_field, sub, always))
        nested = _dataclass_of(hints[model_field.name])
        if nested is not None and sub is not None and "properties" in sub:
            found += _pairs(nested, sub, f"{where}.{key}")
    return found


def test_every_field_of_the_model_is_in_the_crd_and_required_exactly_when_it_always_is() -> None:
    for where, model_field, schema, always in _pairs(DatabaseMigrationSpec, spec_schema(), "spec"):
        assert schema is not None, f"{where} is in the model but not in the CRD"
        required = model_field.default is MISSING and model_field.default_factory is MISSING
        assert required == always, f"{where}: the CRD's required/default and the model disagree"


def test_every_property_of_the_crd_is_in_the_model() -> None:
    known = {where for where, *_ in _pairs(DatabaseMigrationSpec, spec_schema(), "spec")}

    def walk(schema: dict[str, Any], where: str) -> list[str]:
        out = []
        for key, sub in (schema.get("properties") or {}).items():
            out.append(f"{where}.{key}")
            out += walk(sub, f"{where}.{key}")
        return out

    crd = set(walk(spec_schema(), "spec"))
    # The phases.<phase> templates repeat jobTemplate's properties (a YAML anchor).
    crd = {p for p in crd if not p.startswith("spec.phases.") or p.count(".") == 2}
    assert crd - known == set()


def test_a_minimal_spec_is_complete_once_the_api_server_defaulted_it() -> None:
    spec = parse_spec(defaulted(MINIMAL))
    assert (spec.database.secret_ref.key, spec.database.ledger_schema) == (
        "DATABASE_URL",
        "migrate_safe",
    )
    assert (spec.apply.lock_timeout, spec.apply.lock_retries, spec.rollback.policy) == (
        "500ms",
        10,
        "Manual",
    )
    assert spec.backup.enabled is False and spec.postflight.enabled is True
    assert spec.target_version is None and spec.approval.plan_hash is None


def test_a_spec_the_api_server_did_not_default_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError, match=r"spec\.database\.secretRef\.key: missing"):
        parse_spec(MINIMAL)


def test_wrong_types_are_refused_naming_the_field() -> None:
    bad = defaulted({**MINIMAL, "apply": {"lockRetries": "ten"}})
    with pytest.raises(SpecError, match=r"spec\.apply\.lockRetries: expected an integer"):
        parse_spec(bad)


def test_a_phase_template_overrides_the_shared_one_field_by_field() -> None:
    raw = {
        **MINIMAL,
        "jobTemplate": {"image": "shared:1", "serviceAccountName": "runner"},
        "phases": {"apply": {"image": "apply:2"}},
    }
    spec = parse_spec(defaulted(raw))
    assert spec.template("apply") == JobTemplate(image="apply:2", service_account_name="runner")
    assert spec.template("backup") == JobTemplate(image="shared:1", service_account_name="runner")
