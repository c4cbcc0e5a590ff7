"""Fixtures for tests against a real devcluster (etcd + kube-apiserver + kube-controller-manager
+ process-kubelet), started once per session in a temporary directory."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster.testing import Api, Pods, wait_for


@pytest.fixture(scope="session")
def devcluster_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cluster's state directory; it is stopped in ``finally`` whatever the tests did.

    Component logs stay in ``<root>/logs`` and pod logs in ``<root>/pods`` after the session.
    """
    root = tmp_path_factory.mktemp("devcluster")
    try:
        devcluster.up(root)
        yield root
    finally:
        devcluster.down(root)


@pytest.fixture(scope="session")
def api_client(devcluster_root: Path) -> Api:
    kubeconfig = devcluster.Cluster(devcluster_root).kubeconfig
    return config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def core(api_client: Api) -> Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: Api) -> Api:
    return client.BatchV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: Api) -> Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def extensions(api_client: Api) -> Api:
    return client.ApiextensionsV1Api(api_client)


@pytest.fixture(scope="session")
def custom(api_client: Api) -> Api:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def namespace(core: Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    # Pods are admitted only once the controller has made the namespace's ServiceAccount.
    wait_for("the default ServiceAccount", lambda: _has_service_account(core, name), timeout=30)
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def pods(core: Api, devcluster_root: Path, namespace: str) -> Pods:
    return Pods(core, devcluster_root, namespace)


def _has_service_account(core: Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
