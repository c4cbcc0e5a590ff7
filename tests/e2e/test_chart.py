"""The Helm chart installed for real: `helm install` into devcluster, the operator running as a
pod of the chart's Deployment with the chart's ServiceAccount token (namespaced RBAC), its
permissions checked by the API server's authorizer, a DatabaseMigration taken to Ready, and
`helm uninstall` keeping the CRD."""

from __future__ import annotations

import shlex
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres, free_port
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "migrate-safe"
CRD_NAME = "databasemigrations.migrate-safe.dev"
GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    metrics_port: int
    kubeconfig: Path
    bin_dir: Path
    database_url: str

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.bin_dir / tool), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check:
            assert out.returncode == 0, f"{tool} {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out

    def can_i(self, verb: str, resource: str, namespace: str | None = None) -> bool:
        out = self.run(
            "kubectl", "auth", "can-i", verb, resource,
            "--namespace", namespace or self.namespace,
            f"--as=system:serviceaccount:{self.namespace}:{self.service_account}",
            check=False,
        )  # fmt: skip
        assert out.stdout.strip() in ("yes", "no"), out.stderr
        return out.stdout.strip() == "yes"


def _adopt_existing_crd(release: Release, extensions: Api) -> None:
    """Another suite may have created the CRD with kubectl; label it for Helm, as a user adopting
    an existing installation would."""
    try:
        extensions.read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    extensions.patch_custom_resource_definition(CRD_NAME, {"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": release.name,
                        "meta.helm.sh/release-namespace": release.namespace},
    }})  # fmt: skip


@pytest.fixture(scope="module")
def release(
    devcluster_root: Path, core: Api, extensions: Api, pg: LocalPostgres, tmp_path_factory: Any
) -> Iterator[Release]:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    database = f"chart_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    cluster = devcluster.Cluster(devcluster_root)
    release = Release(
        name="ms",
        namespace=namespace,
        service_account="ms-migrate-safe",
        metrics_port=free_port(),
        kubeconfig=cluster.kubeconfig,
        bin_dir=cluster.bin_dir,
        database_url=pg.url(database),
    )
    _adopt_existing_crd(release, extensions)
    # The process-kubelet ignores images and runs the command on this machine: point the chart's
    # command, and the Jobs' command, at this checkout's interpreter.
    values = {
        "operator": {
            "command": [str(Path(sys.executable).parent / "migrate-safe"), "operator"],
            "metricsPort": release.metrics_port,
            "livenessPort": free_port(),
            "extraArgs": ["--verbose"],
        },
        "jobs": {"command": shlex.join([sys.executable, "-m", "migrate_safe"])},
        "rbac": {"scope": "namespace"},
    }
    values_file = tmp_path_factory.mktemp("chart") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    try:
        release.run(
            "helm", "install", release.name, str(CHART), "--namespace", namespace,
            "--values", str(values_file), "--wait", "--timeout", "3m",
        )  # fmt: skip
        yield release
    finally:
        release.run("helm", "uninstall", release.name, "--namespace", namespace, check=False)
        core.delete_namespace(namespace, propagation_policy="Background")
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _operator_pod(core: Api, release: Release) -> Any:
    pods = core.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/name=migrate-safe"
    ).items
    return pods[0] if len(pods) == 1 else None


def test_operator_pod_runs_with_the_service_account_token(
    release: Release, core: Api, devcluster_root: Path
) -> None:
    pod = wait_for("the operator pod", lambda: _operator_pod(core, release), timeout=60)
    assert pod.spec.service_account_name == release.service_account
    assert any(v.projected for v in pod.spec.volumes), "the kubelet mounts the token"
    running = wait_for(
        "the operator container to run",
        lambda: (p := _operator_pod(core, release)) and p.status.phase == "Running" and p,
        timeout=60,
    )
    (status,) = running.status.container_statuses
    assert status.state.running is not None


def test_service_account_cannot_read_secrets_and_can_run_jobs(release: Release) -> None:
    for verb in ("get", "list", "watch"):
        assert not release.can_i(verb, "secrets"), f"{verb} secrets"
    assert release.can_i("create", "jobs.batch")
    assert release.can_i("delete", "jobs.batch")
    assert release.can_i("patch", "databasemigrations.migrate-safe.dev", None)
    assert release.can_i("patch", "databasemigrations.migrate-safe.dev/status")
    assert release.can_i("create", "configmaps")
    assert not release.can_i("create", "pods"), "Jobs create the pods, not the operator"
    assert not release.can_i("create", "jobs.batch", "default"), "namespaced RBAC stays there"
    assert release.can_i("list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not release.can_i("list", "namespaces"), "only with rbac.scope=cluster and -A"


def test_example_migration_becomes_ready_through_the_installed_operator(
    release: Release, core: Api, custom: Api
) -> None:
    ns = release.namespace
    core.create_namespaced_secret(ns, {
        "metadata": {"name": "orders-db-url"},
        "stringData": {"DATABASE_URL": release.database_url},
    })  # fmt: skip
    files = {p.name: p.read_text() for p in sorted(EXAMPLES.glob("*.sql"))}
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "orders-migrations"}, "data": files}
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": "orders-db"},
        "spec": {
            "database": {"secretRef": {"name": "orders-db-url"}},
            "source": {"configMaps": [{"name": "orders-migrations"}]},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def ready() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "orders-db")
        status = obj.get("status") or {}
        fresh = status.get("observedGeneration") == obj["metadata"]["generation"]
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return obj if fresh and conditions.get("Ready") == "True" else None

    obj = wait_for("orders-db to be Ready", ready, timeout=240)
    versions = sorted({int(name.split("_")[0]) for name in files})
    assert obj["status"]["currentVersion"] == versions[-1]
    with psycopg.connect(release.database_url) as conn:
        applied = conn.execute("SELECT max(version) FROM migrate_safe.applied").fetchone()
    assert applied == (versions[-1],)
    url = f"http://127.0.0.1:{release.metrics_port}/metrics"
    with urllib.request.urlopen(url) as page:
        scraped = page.read().decode()
    assert f'migrate_safe_ready{{name="orders-db",namespace="{ns}"}} 1.0' in scraped


def test_uninstall_keeps_the_crd_and_the_migrations(release: Release, extensions: Api) -> None:
    release.run("helm", "uninstall", release.name, "--namespace", release.namespace)
    crd = extensions.read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.deletion_timestamp is None
    out = release.run("kubectl", "get", "databasemigrations", "-n", release.namespace, "-o", "name")
    assert "databasemigration.migrate-safe.dev/orders-db" in out.stdout
