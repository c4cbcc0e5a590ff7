"""The operator's REST calls (k8s/kube.py) against the devcluster's API server: what they send
is what the API server keeps, each kind of patch means what its content type says, and a
refusal raises the client's ApiException with the status and message the operator reads."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.testing import Api
from migrate_safe.k8s import kube
from migrate_safe.k8s.actions import API, PLURAL

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def cluster_client(api_client: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """kube's calls go to the session's devcluster (the operator reads its kubeconfig)."""
    monkeypatch.setattr(kube, "api_client", lambda: api_client)


def test_a_configmap_round_trips_through_create_patch_and_delete(namespace: str) -> None:
    body = {"metadata": {"name": "source", "labels": {"a": "1"}}, "data": {"001.up.sql": "x"}}
    created = kube.create(kube.CORE, namespace, "configmaps", body)
    assert created["metadata"]["uid"]

    merged = kube.patch(kube.CORE, namespace, "configmaps", "source", {"data": {"b": "2"}})
    assert merged["data"] == {"001.up.sql": "x", "b": "2"}  # a merge patch keeps other keys

    ops = [{"op": "add", "path": "/metadata/labels/migrate-safe.dev~1set", "value": "s"}]
    kube.patch(kube.CORE, namespace, "configmaps", "source", ops, content_type=kube.JSON_PATCH)
    assert kube.get(kube.CORE, namespace, "configmaps", "source")["metadata"]["labels"] == {
        "a": "1",
        "migrate-safe.dev/set": "s",
    }

    kube.delete(kube.CORE, namespace, "configmaps", "source")
    with pytest.raises(ApiException) as missing:
        kube.get(kube.CORE, namespace, "configmaps", "source")
    assert missing.value.status == 404


def test_a_refusal_carries_its_status_and_the_api_servers_message(namespace: str) -> None:
    body = {"metadata": {"name": "twice"}, "data": {}}
    kube.create(kube.CORE, namespace, "configmaps", body)
    with pytest.raises(ApiException) as again:
        kube.create(kube.CORE, namespace, "configmaps", body)
    assert again.value.status == 409
    assert "already exists" in json.loads(again.value.body)["message"]

    with pytest.raises(ApiException) as invalid:
        kube.create(kube.CORE, namespace, "configmaps", {"metadata": {"name": "Not_Valid"}})
    assert invalid.value.status == 422


def test_a_job_is_deleted_with_its_propagation_policy(namespace: str) -> None:
    job = {
        "metadata": {"name": "held"},
        "spec": {
            "suspend": True,  # never starts a pod: only its deletion matters here
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "none", "command": ["true"]}],
                }
            },
        },
    }
    kube.create(kube.BATCH, namespace, "jobs", job)
    gone = kube.delete(kube.BATCH, namespace, "jobs", "held", propagation="Background")
    assert gone["kind"] == "Status" or gone["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as missing:
        kube.delete(kube.BATCH, namespace, "jobs", "absent", propagation="Background")
    assert missing.value.status == 404


def test_a_status_patch_guarded_by_a_stale_resource_version_is_refused(
    namespace: str, crd: str
) -> None:
    resource = {
        "apiVersion": API,
        "kind": "DatabaseMigration",
        "metadata": {"name": "guarded"},
        "spec": {
            "database": {"secretRef": {"name": "db"}},
            "source": {"configMaps": [{"name": "source"}]},
        },
    }
    created = kube.create(API, namespace, PLURAL, resource)
    version = created["metadata"]["resourceVersion"]
    first = {"metadata": {"resourceVersion": version}, "status": {"phase": "Pending"}}
    written = kube.patch(API, namespace, PLURAL, "guarded", first, subresource="status")
    assert written["status"]["phase"] == "Pending"

    stale = {"metadata": {"resourceVersion": version}, "status": {"phase": "Preflight"}}
    with pytest.raises(ApiException) as conflict:
        kube.patch(API, namespace, PLURAL, "guarded", stale, subresource="status")
    assert conflict.value.status == 409
    assert kube.get(API, namespace, PLURAL, "guarded")["status"]["phase"] == "Pending"
