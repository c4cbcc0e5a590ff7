"""The API server's defaulting, from the CRD itself: unit tests build specs the way the
operator receives them, so the CRD stays the only source of defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).resolve().parents[2] / "crds" / "databasemigration.yaml"


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


def defaulted(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with every default of the CRD filled in, as the API server does on write and
    read: a property's default applies when it is absent and its parent object exists."""
    return _fill(spec_schema(), copy.deepcopy(spec))


def _fill(schema: dict[str, Any], value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill(sub, value[key])
    return value


SET_CRD = CRD.parent / "databasemigrationset.yaml"


def defaulted_set(spec: dict[str, Any]) -> dict[str, Any]:
    """A DatabaseMigrationSet spec with the defaults of its CRD filled in."""
    crd = yaml.safe_load(SET_CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return _fill(schema, copy.deepcopy(spec))  # type: ignore[no-any-return]
