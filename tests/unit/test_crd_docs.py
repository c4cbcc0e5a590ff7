"""docs/crd.md documents every field of the CRD's spec (the API server enforces the schema;
these docs are what a user reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _field_paths(node: dict[str, Any], prefix: str) -> list[str]:
    paths = []
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        paths.append(path)
        # phases.<phase> repeat jobTemplate's fields, documented once.
        if prefix.count(".") < 2 and not prefix.startswith("spec.phases"):
            paths += _field_paths(child, path)
    return paths


def test_every_spec_field_is_documented() -> None:
    documented = (ROOT / "docs" / "crd.md").read_text()
    crd = yaml.safe_load((ROOT / "crds" / "databasemigration.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    paths = _field_paths(schema["spec"], "spec") + _field_paths(schema["status"], "status")
    missing = [path for path in paths if f"`{path}`" not in documented]
    assert missing == []


def test_the_set_crd_is_generated_from_the_migration_crd() -> None:
    from tools.set_crd import OUTPUT, render

    assert OUTPUT.read_text() == render(), "python tools/set_crd.py"


def test_every_set_field_is_documented() -> None:
    documented = (ROOT / "docs" / "fleets.md").read_text()
    crd = yaml.safe_load((ROOT / "crds" / "databasemigrationset.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    del schema["spec"]["properties"]["template"]  # a DatabaseMigration spec: docs/crd.md
    paths = ["spec.template", *_field_paths(schema["spec"], "spec")]
    paths += _field_paths(schema["status"], "status")
    missing = [path for path in paths if f"`{path}`" not in documented]
    assert missing == []
