"""Two operator replicas with kopf peering, as the chart deploys them with
operator.peering.enabled: the peering CRD and object come from the chart; one replica works, the
other stands by; SIGKILL of the active one hands its work to the standby, which finishes it
without a second Job and without ever working alongside it."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.k8s.main import PEER_LIFETIME_SECONDS
from migrate_safe.localpg import free_port
from tests.conftest import Database
from tests.e2e.conftest import OperatorProcess
from tests.e2e.test_operator import (
    basic_spec,
    configmap,
    create,
    example_files,
    jobs_of,
    secret,
    wait_condition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]

CHART = Path(__file__).resolve().parents[2] / "charts" / "migrate-safe"
PEERING = "migrate-safe"
ACTIVE = "active: this replica reconciles"
CREATED = re.compile(r"created (\w+) Job (\S+)")


def chart_objects(cluster: devcluster.Cluster, namespace: str) -> list[dict[str, Any]]:
    """What `helm install` would create for peering in a namespaced install watching `namespace`."""
    rendered = subprocess.run(
        [
            str(cluster.bin_dir / "helm"), "template", "ms", str(CHART), "--include-crds",
            "--namespace", namespace, "--set", "operator.peering.enabled=true",
            "--set", "replicaCount=2", "--set", "rbac.scope=namespace",
        ],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture
def peering(
    cluster: devcluster.Cluster, extensions: Api, custom: Api, namespace: str
) -> dict[str, Any]:
    """The chart's kopf peering CRDs (installed once, like Helm's crds/) and its KopfPeering."""
    objects = chart_objects(cluster, namespace)
    crds = [
        o
        for o in objects
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kopf.dev"
    ]
    assert {c["spec"]["names"]["kind"] for c in crds} == {"KopfPeering", "ClusterKopfPeering"}
    for crd in crds:
        try:
            extensions.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
        wait_for(f"{crd['metadata']['name']}", lambda c=crd: _established(extensions, c), 30)
    (peer_object,) = [o for o in objects if o["kind"] == "KopfPeering"]
    assert peer_object["metadata"] == {**peer_object["metadata"], "name": PEERING}
    group, version = peer_object["apiVersion"].split("/")
    wait_for(
        "the KopfPeering object",
        lambda: _created(custom, group, version, namespace, peer_object),
        timeout=30,
    )
    return peer_object


def _established(extensions: Api, crd: dict[str, Any]) -> bool:
    status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
    return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])


def _created(custom: Api, group: str, version: str, namespace: str, body: dict[str, Any]) -> bool:
    try:  # right after the CRD is established its endpoint may still answer 404
        custom.create_namespaced_custom_object(group, version, namespace, "kopfpeerings", body)
    except ApiException as exc:
        if exc.status == 404:
            return False
        if exc.status != 409:
            raise
    return True


@pytest.fixture
def replicas(
    crd: str,
    peering: dict[str, Any],
    cluster: devcluster.Cluster,
    project_image: str,
    namespace: str,
    tmp_path: Path,
) -> Iterator[list[OperatorProcess]]:
    """Three operator processes with the chart's flags (--peering, one --priority), not started:
    two replicas and the replacement of the first."""
    processes = [
        OperatorProcess(
            namespace,
            cluster.kubeconfig,
            tmp_path / f"operator-{index}.log",
            free_port(),
            project_image,
            peering=("--peering", PEERING, "--priority", "100"),
        )
        for index in range(3)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def log_time(log: str, line: str) -> datetime:
    """When the first log line containing `line` was written (kopf's local-time stamp)."""
    (stamp,) = re.findall(rf"^\[([^\]]+)\][^\n]*{re.escape(line)}", log, re.MULTILINE)[:1]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


def log_of(process: OperatorProcess) -> str:
    return process.log_path.read_text() if process.log_path.exists() else ""


def peers(custom: Api, namespace: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", PEERING)
    return dict(obj.get("status") or {})


def test_standby_takes_over_from_a_killed_active_replica_and_finishes_its_work(
    replicas: list[OperatorProcess],
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
) -> None:
    first, second, replacement = replicas
    first.start()
    wait_for("the first replica to be active", lambda: ACTIVE in log_of(first), timeout=90)
    second.start()
    # A replica starts paused and stays so when the peering object shows a live peer of a higher
    # priority (kopf logs nothing then): its keep-alive record says it is up.
    records = wait_for("two peering records", lambda: len(p := peers(custom, namespace)) == 2 and p)
    priorities = {r["priority"] for r in records.values()}
    assert len(priorities) == 2, "equal priorities would pause every replica"
    second_priority = min(priorities)  # started later; were it higher, it would work now

    files = example_files(2)
    files["003_slow.up.sql"] = "SELECT pg_sleep(8);\nCREATE TABLE slow (id int);"
    files["003_slow.down.sql"] = "DROP TABLE slow;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "slow", basic_spec())
    wait_for("the apply Job", lambda: jobs_of(batch, namespace, "apply"), timeout=120)
    first.kill()
    killed, killed_at = time.monotonic(), datetime.now()
    wait_for("the standby to take over", lambda: ACTIVE in log_of(second), timeout=90)
    takeover = time.monotonic() - killed
    obj = wait_condition(custom, namespace, "slow", "Ready", "True", timeout=180)
    ready = time.monotonic() - killed
    print(f"takeover {takeover:.1f}s after SIGKILL; Ready {ready:.1f}s after SIGKILL")

    assert obj["status"]["currentVersion"] == 3
    assert len(jobs_of(batch, namespace, "apply")) == 1
    applied = db.rows(
        "SELECT version, count(*) FROM migrate_safe.history WHERE direction = 'up'"
        " AND outcome = 'succeeded' GROUP BY version ORDER BY version"
    )
    assert applied == [(1, 1), (2, 1), (3, 1)]
    # One worker at a time: the standby became active once, after the kill; no Job was
    # created twice.
    assert log_of(second).count(ACTIVE) == 1
    assert log_time(log_of(second), ACTIVE) > killed_at
    created = CREATED.findall(log_of(first) + log_of(second))
    assert ("apply", jobs_of(batch, namespace, "apply")[0].metadata.name) in created
    assert [job for job, count in Counter(created).items() if count > 1] == []
    assert takeover < PEER_LIFETIME_SECONDS + 15, f"takeover took {takeover:.1f}s"
    wait_for("the dead replica's record to go", lambda: len(peers(custom, namespace)) == 1, 60)

    # The killed replica's replacement starts later, so it never preempts the active one.
    replacement.start()
    records = wait_for(
        "the replacement's record", lambda: len(p := peers(custom, namespace)) == 2 and p
    )
    assert sorted(r["priority"] for r in records.values()) == [
        min(r["priority"] for r in records.values()),
        second_priority,
    ]
    assert ACTIVE not in log_of(replacement)
    assert "inactive" not in log_of(second)


# --- the chart's own Deployment ----------------------------------------------------------------


def helm(cluster: devcluster.Cluster, *args: str) -> None:
    command = [str(cluster.bin_dir / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"


@pytest.fixture
def two_pods(
    crd: str, cluster: devcluster.Cluster, project_image: str, namespace: str, tmp_path: Path
) -> Iterator[str]:
    """`helm install` with peering and two replicas (namespaced RBAC: the pods use the chart's
    ServiceAccount, so its peering grants are what they run with); the pods' label selector."""
    release = f"ha{namespace[-6:]}"
    repository, tag = project_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag},
        "operator": {"peering": {"enabled": True}},
        "replicaCount": 2,
        "rbac": {"scope": "namespace"},
        "crds": {"create": False},  # the session's `crd` fixture installed them
        "fleets": {"enabled": False},
        "metrics": {"service": {"enabled": False}},
        "grafanaDashboard": {"create": False},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    helm(cluster, "install", release, str(CHART), "--namespace", namespace,
         "--values", str(tmp_path / "values.yaml"), "--wait", "--timeout", "4m")  # fmt: skip
    try:
        yield f"app.kubernetes.io/name=migrate-safe,app.kubernetes.io/instance={release}"
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace)


def pod_logs(core: Api, namespace: str, selector: str) -> dict[str, str]:
    """Each running operator pod's log."""
    logs = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
            logs[pod.metadata.name] = str(
                core.read_namespaced_pod_log(pod.metadata.name, namespace)
            )
    return logs


def test_the_charts_two_replicas_elect_one_and_the_other_takes_over(
    two_pods: str, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    def one_active() -> str | None:
        logs = pod_logs(core, namespace, two_pods)
        active = [name for name, log in logs.items() if ACTIVE in log]
        return active[0] if len(logs) == 2 and len(active) == 1 else None

    active = wait_for("one active replica of two", one_active, timeout=180)
    wait_for("both replicas' peering records", lambda: len(peers(custom, namespace)) == 2, 60)
    assert one_active() == active, "the standby stays paused once it sees the active replica"
    core.delete_namespaced_pod(active, namespace, grace_period_seconds=0)  # SIGKILL
    killed = time.monotonic()

    def taken_over() -> str | None:
        logs = pod_logs(core, namespace, two_pods)
        return next((n for n, log in logs.items() if n != active and ACTIVE in log), None)

    successor = wait_for("the standby pod to take over", taken_over, timeout=120)
    print(f"chart: takeover {time.monotonic() - killed:.1f}s after the active pod was killed")
    configmap(core, namespace, "migrations", example_files(2))
    secret(core, namespace, db)
    create(custom, namespace, "orders", basic_spec())
    obj = wait_condition(custom, namespace, "orders", "Ready", "True", timeout=180)
    assert obj["status"]["currentVersion"] == 2
    # The Deployment's replacement pod came up later, so it stands by.
    logs = wait_for(
        "the replacement pod", lambda: len(p := pod_logs(core, namespace, two_pods)) == 2 and p, 120
    )
    assert [name for name, log in logs.items() if ACTIVE in log] == [successor]
