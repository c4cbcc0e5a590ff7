"""What Flux (and every kstatus user: `kubectl wait`, cli-utils, kpt) makes of a
DatabaseMigration's status, by the kstatus rules of sigs.k8s.io/cli-utils, on the same objects as
the Argo CD health cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.unit.packaging.conftest import ROOT, TESTDATA


def kstatus(obj: dict[str, Any]) -> str:
    """cli-utils' status.Compute for a custom resource, in its order of checks."""
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != meta.get("generation"):
        return "InProgress"  # LatestGenerationNotObserved
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    if "Ready" in conditions:
        return "Current" if conditions["Ready"] == "True" else "InProgress"
    return "Current"


EXPECTED = {
    # Without the CRD's default an unseen object would look done: see the next test.
    "no-status": "Current",
    "default-observed-generation": "InProgress",
    "stale-generation": "InProgress",
    "stale-stalled": "InProgress",
    "applying": "InProgress",
    "preflight-blocked": "InProgress",
    "awaiting-approval": "InProgress",
    "succeeded": "Current",
    "planned": "Current",
    "apply-failed": "Failed",
    "terminating": "Terminating",
}


def _case(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((TESTDATA / f"{name}.yaml").read_text())
    return obj


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kstatus_of_each_case(name: str) -> None:
    assert kstatus(_case(name)) == EXPECTED[name]


def test_every_testdata_file_has_an_expectation() -> None:
    assert set(EXPECTED) == {p.stem for p in TESTDATA.glob("*.yaml")}


def test_crd_defaults_observed_generation_so_new_objects_are_in_progress() -> None:
    """The API server fills status.observedGeneration=-1 on a new object, which turns kstatus'
    "no conditions → Current" into InProgress until the operator writes its first status."""
    crd = yaml.safe_load((ROOT / "crds" / "databasemigration.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
    as_served = _case("no-status") | {"status": status["default"]}
    assert kstatus(as_served) == "InProgress"


def test_a_terminal_failure_must_not_keep_reconciling_true() -> None:
    """kstatus checks Reconciling before Stalled: Stalled=True with Reconciling=True still reads
    InProgress, and Flux would wait for its timeout instead of failing at once."""
    obj = copy.deepcopy(_case("apply-failed"))
    reconciling = dict(obj["status"]["conditions"][0], type="Reconciling", status="True")
    obj["status"]["conditions"].append(reconciling)
    assert kstatus(obj) == "InProgress"
    assert kstatus(_case("apply-failed")) == "Failed"
