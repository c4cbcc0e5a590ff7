"""The operator's REST calls (k8s/kube.py) against the devcluster's API server: what they send
is what the API server keeps, each kind of patch means what its content type says, and a
refusal raises the client's ApiException with the status and message the operator reads."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.testing import Api, Pods, wait_for
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


def test_a_job_is_deleted_with_its_propagation_policy(
    namespace: str, pods: Pods, project_image: str
) -> None:
    """The operator deletes a Job with propagation Background so its pod goes too. batch/v1's
    own default orphans a Job's pods: a pod the garbage collector removes proves the API server
    received the policy; the same call with Orphan leaves the pod, owned by nothing."""
    for name in ("reaped", "orphaned"):
        kube.create(kube.BATCH, namespace, "jobs", one_pod_job(name, project_image))
        wait_for(f"Job {name}'s pod", partial(pods_of, pods, name), timeout=120)

    kube.delete(kube.BATCH, namespace, "jobs", "reaped", propagation="Background")
    kube.delete(kube.BATCH, namespace, "jobs", "orphaned", propagation="Orphan")

    # The list includes a pod being deleted: empty means gone.
    reaped = partial(pods_of, pods, "reaped")
    wait_for("the garbage collector to delete reaped's pod", lambda: not reaped(), timeout=120)
    # An orphaning deletion ends once the garbage collector has cut the pods' owner references.
    orphaned = partial(is_gone, kube.BATCH, namespace, "jobs", "orphaned")
    wait_for("the Job orphaned to be deleted", orphaned, timeout=120)
    [kept] = pods_of(pods, "orphaned")
    assert not kept.metadata.owner_references

    with pytest.raises(ApiException) as missing:
        kube.delete(kube.BATCH, namespace, "jobs", "absent", propagation="Background")
    assert missing.value.status == 404


def one_pod_job(name: str, image: str) -> dict[str, object]:
    """A Job whose one pod exits at once: nothing for the kubelet to stop when it is deleted."""
    container = {"name": "main", "image": image, "command": ["python", "-c", "pass"]}
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": template}}


def pods_of(pods: Pods, job: str) -> list[Any]:
    return pods.list(f"job-name={job}")


def is_gone(api: str, namespace: str, plural: str, name: str) -> bool:
    try:
        kube.get(api, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


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
