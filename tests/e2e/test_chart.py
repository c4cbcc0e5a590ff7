"""The Helm chart installed for real: `helm install` into devcluster with the image built from
the Dockerfile, the operator running as a pod of the chart's Deployment on the node (the
chart's security contexts enforced by the runtime) with the chart's ServiceAccount token
(namespaced RBAC), its permissions checked by the API server's authorizer, a DatabaseMigration
taken to Ready by Jobs of the same image, and `helm uninstall` keeping the CRD."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres
from tests.conftest import EXAMPLES
from tests.e2e.conftest import node_url

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
    kubeconfig: Path
    bin_dir: Path
    database_url: str = field(repr=False)  # holds the password

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
    devcluster_root: Path,
    core: Api,
    extensions: Api,
    pg: LocalPostgres,
    pg_host: str,
    project_image: str,
    tmp_path_factory: Any,
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
        kubeconfig=cluster.kubeconfig,
        bin_dir=cluster.bin_dir,
        database_url=node_url(pg.url(database), pg_host),
    )
    _adopt_existing_crd(release, extensions)
    # The image as a user points the chart at one: the operator and its Jobs run it as built.
    repository, tag = project_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag},
        "operator": {"extraArgs": ["--verbose"]},
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
    # The release's instance label: the phase Jobs' pods are named migrate-safe too.
    selector = f"app.kubernetes.io/name=migrate-safe,app.kubernetes.io/instance={release.name}"
    pods = core.list_namespaced_pod(release.namespace, label_selector=selector).items
    return pods[0] if len(pods) == 1 else None


def _running_operator(core: Api, release: Release) -> Any:
    return wait_for(
        "the operator container to run",
        lambda: (p := _operator_pod(core, release)) and p.status.phase == "Running" and p,
        timeout=60,
    )


def test_operator_pod_runs_the_image_with_the_service_account_token(
    release: Release, core: Api, project_image: str
) -> None:
    pod = wait_for("the operator pod", lambda: _operator_pod(core, release), timeout=60)
    assert pod.spec.service_account_name == release.service_account
    assert any(v.projected for v in pod.spec.volumes), "the kubelet mounts the token"
    (status,) = _running_operator(core, release).status.container_statuses
    assert status.state.running is not None
    assert status.image == project_image and status.image_id.startswith("sha256:")


def test_security_context_is_enforced_in_the_operator_pod(release: Release, core: Api) -> None:
    """The chart's restricted security context as the runtime applies it: UID 10001, and a
    read-only root filesystem where only /tmp (an emptyDir) takes writes."""
    pod = _running_operator(core, release)
    probe = (
        "grep '^Uid:' /proc/self/status; touch /opt/migrate-safe/probe;"
        " touch /tmp/probe && echo tmp-writable"
    )
    exec_in_pod = ["exec", "-n", release.namespace, pod.metadata.name, "--"]
    out = release.run("kubectl", *exec_in_pod, "sh", "-c", probe, check=False)
    assert "Uid:\t10001\t10001\t10001\t10001" in out.stdout, out
    assert "'/opt/migrate-safe/probe': Read-only file system" in out.stderr, out
    assert "tmp-writable" in out.stdout, out


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
    # The operator's own network namespace: /metrics is on its pod address. The gauges follow
    # the status write, so wait for the series rather than read it once.
    pod = _operator_pod(core, release)
    ready = f'migrate_safe_ready{{name="orders-db",namespace="{ns}"}} 1.0'
    wait_for(
        "the ready gauge", lambda: ready in _scrape(f"http://{pod.status.pod_ip}:9090/metrics")
    )


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url) as page:
        return str(page.read().decode())


def test_uninstall_keeps_the_crd_and_the_migrations(release: Release, extensions: Api) -> None:
    release.run("helm", "uninstall", release.name, "--namespace", release.namespace)
    crd = extensions.read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.deletion_timestamp is None
    out = release.run("kubectl", "get", "databasemigrations", "-n", release.namespace, "-o", "name")
    assert "databasemigration.migrate-safe.dev/orders-db" in out.stdout
