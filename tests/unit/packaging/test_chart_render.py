"""The Helm chart as `helm template` renders it: the CRD the repository defines, least-privilege
RBAC without Secrets, a hardened single-replica Deployment, strict values, alerts that query
exported metrics and link the runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.packaging.conftest import CHART, ROOT, Render, by_kind, unknown_metrics

RUNBOOK = ROOT / "docs" / "runbook.md"


CRDS = ("databasemigration", "databasemigrationset")


@pytest.mark.parametrize("name", CRDS)
def test_chart_crds_are_the_repository_crds_byte_for_byte(name: str) -> None:
    shipped = (CHART / "files" / f"{name}.crd.yaml").read_text()
    assert shipped == (ROOT / "crds" / f"{name}.yaml").read_text(), (
        f"cp crds/{name}.yaml charts/migrate-safe/files/{name}.crd.yaml"
    )


def test_rendered_crds_have_the_same_schemas_and_are_kept_on_uninstall(render: Render) -> None:
    with_sets = render("fleets.enabled=true")
    rendered = {c["metadata"]["name"]: c for c in by_kind(with_sets, "CustomResourceDefinition")}
    assert len(rendered) == len(CRDS)
    for name in CRDS:
        source = yaml.safe_load((ROOT / "crds" / f"{name}.yaml").read_text())
        crd = rendered[source["metadata"]["name"]]
        assert crd["spec"] == source["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not by_kind(render("crds.create=false"), "CustomResourceDefinition")
    (only,) = by_kind(render("fleets.enabled=false"), "CustomResourceDefinition")
    assert only["spec"]["names"]["kind"] == "DatabaseMigration"
    assert by_kind(render(), "CustomResourceDefinition") == [only], "sets are off by default"


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("rbac.scope=namespace",),
        ("operator.peering.enabled=true", "replicaCount=2"),
        ("fleets.enabled=true",),
        ("fleets.enabled=true", "rbac.scope=namespace"),
    ],
    ids=["cluster", "namespace", "peering", "fleets", "fleets-namespace"],
)
def test_rbac_never_reads_secrets_or_grants_wildcards(
    render: Render, sets: tuple[str, ...]
) -> None:
    rules = _rules(render(*sets))
    assert rules
    for rule in rules:
        if "secrets" in rule["resources"]:  # fleets find database Secrets by their labels
            assert rule["resources"] == ["secrets"] and rule["verbs"] == ["list", "watch"], rule
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        assert "pods/exec" not in rule["resources"], rule


def _grants(objects: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in _rules(objects)
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_grants_what_the_operator_needs(render: Render) -> None:
    objects = render("fleets.enabled=true")
    assert _grants(objects, "batch", "jobs") == {
        "get",
        "list",
        "watch",
        "create",
        "delete",
        "patch",
    }
    assert _grants(objects, "migrate-safe.dev", "databasemigrations/status") == {
        "get",
        "patch",
        "update",
    }
    assert _grants(objects, "", "pods") == {"get", "list", "watch"}
    assert _grants(objects, "", "namespaces") == {"get", "list", "watch"}
    assert not _grants(objects, "kopf.dev", "clusterkopfpeerings"), "peering is off by default"
    assert {"create", "delete", "patch"} <= _grants(
        objects, "migrate-safe.dev", "databasemigrations"
    )
    assert _grants(objects, "migrate-safe.dev", "databasemigrationsets/status") == {"get", "patch"}


def test_without_fleets_the_operator_has_no_secret_permission_at_all(render: Render) -> None:
    for sets in ((), ("fleets.enabled=false",), ("fleets.enabled=false", "rbac.scope=namespace")):
        objects = render(*sets)
        assert not [r for r in _rules(objects) if "secrets" in r["resources"]]
        assert not _grants(objects, "migrate-safe.dev", "databasemigrationsets")
        assert "create" not in _grants(objects, "migrate-safe.dev", "databasemigrations")
        (deployment,) = by_kind(objects, "Deployment")
        assert "--no-fleets" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_namespace_scope_uses_roles_and_reads_only_crds_cluster_wide(render: Render) -> None:
    objects = render("rbac.scope=namespace", "watchNamespaces={apps,billing}")
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["apps", "billing"]
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (deployment,) = by_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=apps" in args and "--namespace=billing" in args
    assert "--all-namespaces" not in args


def test_deployment_is_hardened_and_single(render: Render) -> None:
    (deployment,) = by_kind(render(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["command"] == ["migrate-safe", "operator"]
    assert {"--all-namespaces", "--standalone", "--metrics-port=9090"} <= set(container["args"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MIGRATE_SAFE_JOB_IMAGE"] == container["image"], "Jobs run the operator's image"
    assert env["MIGRATE_SAFE_JOB_COMMAND"] == "migrate-safe"


def test_image_digest_wins_over_tag(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    (deployment,) = by_kind(render(f"image.digest={digest}"), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/migrate-safe/migrate-safe@{digest}"


def _helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_bin), "template", "ms", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "value",
    ["rbac.scpoe=cluster", "operator.metricPort=1", "rbac.scope=everything", "replicaCount=2"],
)
def test_mistakes_in_values_fail_the_install(helm_bin: Path, value: str) -> None:
    out = _helm(helm_bin, "--set", value)
    assert out.returncode != 0
    assert re.search(r"additional properties|value must be one of|peering", out.stderr), out.stderr


def test_monitoring_objects_only_on_request(render: Render) -> None:
    kinds = {o["kind"] for o in render()}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    objects = render("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (service,) = by_kind(objects, "Service")
    assert service["spec"]["ports"][0]["name"] == "metrics"


def _alerts(render: Render, *sets: str) -> list[dict[str, Any]]:
    (rule,) = by_kind(render("metrics.prometheusRule.enabled=true", *sets), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alerts_query_only_exported_metrics(render: Render) -> None:
    alerts = _alerts(render)
    assert {a["alert"] for a in alerts} == {
        "MigrateSafeMigrationFailed",
        "MigrateSafeMigrationStuck",
        "MigrateSafeRollbackStarted",
        "MigrateSafeApplyWithoutBackup",
        "MigrateSafeReconcileErrors",
        "MigrateSafeSetHalted",
    }
    assert unknown_metrics([a["expr"] for a in alerts]) == {}


def test_every_alert_links_an_existing_runbook_section(render: Render) -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for alert in _alerts(render):
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("https://") and "/docs/runbook.md#" in url
        assert url.split("#")[1] in anchors, f"{alert['alert']}: no section #{url.split('#')[1]}"


def test_alert_thresholds_come_from_values(render: Render) -> None:
    alerts = {
        a["alert"]: a
        for a in _alerts(
            render,
            "metrics.prometheusRule.stuck.afterSeconds=600",
            "metrics.prometheusRule.disabled={MigrateSafeRollbackStarted}",
        )
    }
    assert "> 600" in alerts["MigrateSafeMigrationStuck"]["expr"]
    assert "MigrateSafeRollbackStarted" not in alerts
