"""What Flux (and every kstatus user: `kubectl wait`, cli-utils, kpt) makes of a
DatabaseMigration's status: sigs.k8s.io/cli-utils' kstatus itself (tools/kstatus, pinned), on the
same objects as the Argo CD health cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.gotools import kstatus, kstatus_of
from tests.unit.packaging.conftest import ROOT, TESTDATA

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
    # As served in end-to-end runs
    "captured-applying": "InProgress",
    "captured-rolling-back": "InProgress",
    "captured-migrated": "Current",
    "captured-apply-failed": "Failed",
}


def _case(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((TESTDATA / f"{name}.yaml").read_text())
    return obj


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kstatus_of_each_case(name: str) -> None:
    assert kstatus_of(_case(name)) == EXPECTED[name]


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
    assert kstatus_of(as_served) == "InProgress"


def test_a_terminal_failure_must_not_keep_reconciling_true() -> None:
    """kstatus takes the first of Reconciling=True and Stalled=True in the conditions list: with
    both true, a failure reads Failed or InProgress by list order alone, and Flux could wait for
    its timeout instead of failing at once. So the operator sets Reconciling=False on Stalled."""
    failed = _case("apply-failed")
    reconciling = dict(failed["status"]["conditions"][0], type="Reconciling", status="True")
    first, last = copy.deepcopy(failed), copy.deepcopy(failed)
    first["status"]["conditions"].insert(0, reconciling)
    last["status"]["conditions"].append(reconciling)
    verdicts = [v.status for v in kstatus(first, last, failed)]
    assert verdicts == ["InProgress", "Failed", "Failed"]
    assert {c["type"]: c["status"] for c in failed["status"]["conditions"]}.get(
        "Reconciling", "False"
    ) == "False"
