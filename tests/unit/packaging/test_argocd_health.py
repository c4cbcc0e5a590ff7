"""The Argo CD health check (docs/argocd/…/health.lua) against every case of its health_test.yaml,
run with a real Lua interpreter (lupa) limited to the libraries Argo CD opens by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import lupa
import pytest
import yaml

from tests.unit.packaging.conftest import HEALTH, ROOT, TESTDATA
from tools.crd_schema import json_schemas, load

SCRIPT = (HEALTH / "health.lua").read_text()
CASES = yaml.safe_load((HEALTH / "health_test.yaml").read_text())["tests"]


def argocd_health(obj: dict[str, Any], script: str = SCRIPT) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD opens only the base and table libraries unless useOpenLibs is set.
    for library in ("string", "os", "io", "math", "utf8", "coroutine", "debug", "package"):
        lua.execute(f"{library} = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {str(k): str(v) for k, v in result.items()}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_matches_health_test_yaml(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / case["inputPath"]).read_text())
    assert argocd_health(obj) == case["healthStatus"]


def test_every_testdata_file_is_a_case() -> None:
    listed = {Path(c["inputPath"]).name for c in CASES}
    assert listed == {p.name for p in TESTDATA.glob("*.yaml")}


def test_degraded_only_when_stalled_for_the_observed_generation() -> None:
    """A retry that may still succeed must never fail an Argo CD sync."""
    for path in TESTDATA.glob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        status = obj.get("status") or {}
        stalled = any(
            c["type"] == "Stalled" and c["status"] == "True" for c in status.get("conditions", [])
        )
        observed = status.get("observedGeneration") == obj["metadata"]["generation"]
        degraded = argocd_health(obj)["status"] == "Degraded"
        assert degraded == (stalled and observed and "deletionTimestamp" not in obj["metadata"]), (
            path.name
        )


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.yaml")), ids=lambda p: p.stem)
def test_testdata_is_valid_against_the_crd(path: Path) -> None:
    """The cases describe objects the API server would really hold (spec and status)."""
    (schema,) = json_schemas(load()).values()
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_argocd_cm_example_ships_this_script() -> None:
    """The argocd-cm snippet users copy carries exactly the tested script."""
    cm = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in ("DatabaseMigration", "DatabaseMigrationSet"):
        key = f"resource.customizations.health.migrate-safe.dev_{kind}"
        assert cm["data"][key].strip() == SCRIPT.strip()


SET_HEALTH = HEALTH.parent / "DatabaseMigrationSet"
SET_CASES = yaml.safe_load((SET_HEALTH / "health_test.yaml").read_text())["tests"]


@pytest.mark.parametrize("case", SET_CASES, ids=[Path(c["inputPath"]).stem for c in SET_CASES])
def test_the_set_kind_has_the_same_health_check(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((SET_HEALTH / case["inputPath"]).read_text())
    script = (SET_HEALTH / "health.lua").read_text()
    assert script == SCRIPT
    assert argocd_health(obj, script) == case["healthStatus"]


@pytest.mark.parametrize(
    "path", sorted((SET_HEALTH / "testdata").glob("*.yaml")), ids=lambda p: p.stem
)
def test_set_testdata_is_valid_against_the_set_crd(path: Path) -> None:
    (schema,) = json_schemas(load(ROOT / "crds" / "databasemigrationset.yaml")).values()
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)
