"""Fixtures for tests against a real devcluster (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and a node: containerd, runc, the kubelet), started once per session in a
temporary directory. Every pod runs an image: the project's, built from the Dockerfile
(devcluster/image.py) and imported into the node, or one a test builds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import devcluster
from devcluster import image
from devcluster.testing import Api, Pods, wait_for
from migrate_safe.localpg import LocalPostgres, free_port
from tests.conftest import Database
from tests.e2e.artefacts import Collector, artefact_files, scan


@pytest.fixture(scope="session")
def devcluster_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cluster's state directory; it is stopped in ``finally`` whatever the tests did.

    Component logs stay in ``<root>/logs`` and container logs in ``<root>/pods`` after the
    session.
    """
    root = tmp_path_factory.mktemp("devcluster")
    try:
        devcluster.up(root)
        yield root
    finally:
        devcluster.down(root)


@pytest.fixture(scope="session")
def cluster(devcluster_root: Path) -> devcluster.Cluster:
    return devcluster.Cluster(devcluster_root)


@pytest.fixture(scope="session")
def project_image(cluster: devcluster.Cluster) -> str:
    """The project image, built from the Dockerfile (a cache hit once .ci/run built it) and
    imported into the node; its reference, as pods and the chart name it."""
    built = image.ensure_image()
    cluster.load_image(built)
    return built.ref


@pytest.fixture(scope="session")
def pg_host(cluster: devcluster.Cluster, pg: LocalPostgres) -> str:
    """Where pods reach the session's PostgreSQL (it listens on loopback): the node's address,
    which the node agent relays to it. This machine reaches it there too."""
    return cluster.expose(pg.port)


@dataclass
class NodeDatabase(Database):
    """A test's database, by a DSN that works in pods and on this machine alike."""

    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return make_conninfo(super().url, host=self.host)


@pytest.fixture
def db(db: Database, pg_host: str) -> Database:
    return NodeDatabase(db.server, db.name, pg_host)


def node_url(url: str, host: str) -> str:
    """``url`` (a DSN on loopback) as pods reach it."""
    assert conninfo_to_dict(url).get("host") == "127.0.0.1", "expected a loopback DSN"
    return make_conninfo(url, host=host)


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


@pytest.fixture(scope="session")
def artefacts(
    api_client: Api, pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    """What the test namespaces held (Events, pod statuses and logs, Jobs, statuses), copied
    before each is deleted. At the end of the session no artefact of the run may hold the
    database password or a DSN with a password (tests/e2e/test_secrets.py)."""
    collector = Collector(api_client, tmp_path_factory.mktemp("artefacts"))
    yield collector
    hits = scan(artefact_files(tmp_path_factory.getbasetemp()), [pg.password])
    assert not hits, "the password leaked:\n" + "\n".join(map(str, hits))


@pytest.fixture
def namespace(core: Api, artefacts: Collector, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    # Pods are admitted only once the controller has made the namespace's ServiceAccount.
    wait_for("the default ServiceAccount", lambda: _has_service_account(core, name), timeout=30)
    yield name
    artefacts.collect(name)
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def pods(core: Api, namespace: str) -> Pods:
    return Pods(core, namespace)


def _has_service_account(core: Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# --- the operator and its CRD ------------------------------------------------------------------

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_FILE = CRDS / "databasemigration.yaml"
SET_CRD_FILE = CRDS / "databasemigrationset.yaml"


@pytest.fixture(scope="session")
def crd(extensions: Api) -> str:
    """The operator's CRDs (DatabaseMigration, DatabaseMigrationSet), installed once per
    session and Established; the DatabaseMigration CRD's name."""
    names = [_install_crd(extensions, path) for path in (CRD_FILE, SET_CRD_FILE)]
    return names[0]


def _install_crd(extensions: Api, path: Path) -> str:
    body = yaml.safe_load(path.read_text())
    try:
        extensions.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    name = body["metadata"]["name"]

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(f"the CRD {name} to be established", established, timeout=30)
    return str(name)


@dataclass
class OperatorProcess:
    """`migrate-safe operator` as its own process, watching one namespace; its Jobs' pods run
    the project image on the node."""

    namespace: str
    kubeconfig: Path
    log_path: Path
    metrics_port: int
    job_image: str
    process: subprocess.Popen[bytes] | None = None
    peering: tuple[str, ...] = ("--standalone",)  # or ("--peering", NAME, "--priority", N)

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "MIGRATE_SAFE_JOB_IMAGE": self.job_image,
        }
        env.pop("MIGRATE_SAFE_JOB_COMMAND", None)  # the image's own `migrate-safe`
        command = [
            sys.executable, "-m", "migrate_safe", "operator", "--namespace", self.namespace,
            *self.peering, "--metrics-port", str(self.metrics_port), "--liveness-port", "0",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def kill(self) -> None:
        """kill -9: no cleanup, as a crashed pod or a deleted node would leave it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as page:
            return str(page.read().decode())


@pytest.fixture
def operator(
    crd: str, cluster: devcluster.Cluster, project_image: str, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        namespace, cluster.kubeconfig, tmp_path / "operator.log", free_port(), project_image
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
