"""The database password stays in its Secret: a run through every phase, a failure, a wrong
password and a DSN that libpq quotes back leave it in no log, Event, status, termination
message, Job spec, metric or report. The ServiceAccounts may do what their work needs and no
more, and a Job pod gets no ServiceAccount token.

The conftest's `artefacts` fixture repeats the scan over every namespace of the session when it
ends; here it is asserted for one run, with a positive control."""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import make_conninfo

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres
from tests.conftest import Database
from tests.e2e.artefacts import Collector, artefact_files, scan
from tests.e2e.conftest import OperatorProcess
from tests.e2e.test_operator import (
    basic_spec,
    condition,
    configmap,
    create,
    example_files,
    get,
    wait_condition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]

CHART = Path(__file__).resolve().parents[2] / "charts" / "migrate-safe"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
WRONG_PASSWORD = "not-the-password-" + uuid.uuid4().hex[:8]


def wait_reason(custom: Api, namespace: str, name: str, kind: str, reasons: set[str]) -> Any:
    def reached() -> Any:
        obj = get(custom, namespace, name)
        return obj if condition(obj, kind).get("reason") in reasons else None

    return wait_for(f"{name}: {kind} in {reasons}", reached, timeout=180)


def test_a_run_through_every_phase_leaves_the_password_nowhere(
    operator: OperatorProcess,
    artefacts: Collector,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    pg: LocalPostgres,
) -> None:
    secrets = {
        "db": db.url,
        "wrong": make_conninfo(db.url, password=WRONG_PASSWORD),
        # An unclosed IPv6 bracket: libpq's error message quotes the whole URI back.
        "garbled": f"postgresql://postgres:{pg.password}@[::1/{db.name}",
    }
    for name, url in secrets.items():
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "stringData": {"DATABASE_URL": url}}
        )
    files = example_files()
    configmap(core, namespace, "migrations", files)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    create(custom, namespace, "orders", basic_spec(
        backup={"enabled": True, "persistentVolumeClaim": "backups"}, mode="Plan"
    ))  # fmt: skip
    plan = wait_condition(custom, namespace, "orders", "Ready", "True")["status"]["plan"]
    create(custom, namespace, "wrong", basic_spec(database={"secretRef": {"name": "wrong"}}))
    create(custom, namespace, "garbled", basic_spec(database={"secretRef": {"name": "garbled"}}))
    custom.patch_namespaced_custom_object(
        "migrate-safe.dev", "v1alpha1", namespace, "databasemigrations", "orders",
        {"spec": {"mode": "Apply", "approval": {"planHash": plan["hash"]}}},
    )  # fmt: skip
    obj = wait_condition(custom, namespace, "orders", "Ready", "True")
    assert obj["status"]["currentVersion"] == max(int(n.split("_")[0]) for n in files)
    # The same migrations with a ledger of their own: version 1 meets the tables it creates.
    ledger = {"secretRef": {"name": "db"}, "ledgerSchema": "second_ledger"}
    create(custom, namespace, "broken", basic_spec(database=ledger))
    wrong = wait_reason(custom, namespace, "wrong", "Ready", {"TransientFailure"})
    assert "password authentication failed" in condition(wrong, "Ready")["message"]
    garbled = wait_reason(
        custom, namespace, "garbled", "Stalled", {"PreflightFailed", "ConfigInvalid"}
    )
    assert "DATABASE_URL" in condition(garbled, "Stalled")["message"]
    wait_reason(custom, namespace, "broken", "Stalled", {"PreflightFailed", "ApplyFailed"})

    (artefacts.root / namespace).mkdir(parents=True, exist_ok=True)
    (artefacts.root / namespace / "metrics.txt").write_text(operator.metrics())
    collected = artefacts.collect(namespace)
    assert not (collected / "not-collected.txt").exists()
    for pod in core.list_namespaced_pod(namespace).items:
        assert pod.spec.automount_service_account_token is False, pod.metadata.name
        mounts = [m.mount_path for c in pod.spec.containers for m in c.volume_mounts or []]
        assert TOKEN_PATH not in mounts, f"{pod.metadata.name} has a token"
    assert len(list(collected.glob("log-*"))) >= 5, "the Job pods' logs were read"
    run = [*collected.rglob("*"), operator.log_path]
    assert scan(run, [pg.password, WRONG_PASSWORD]) == []

    # The scanner does find a leak (outside the run's directory, which the session scans too).
    with tempfile.TemporaryDirectory() as outside:
        control = Path(outside) / "test_control0" / "operator.log"  # as a test's tmp_path
        control.parent.mkdir()
        control.write_text(f"connecting to {db.url}\n")
        found = scan(artefact_files(Path(outside)), [pg.password])
        assert [(h.path, h.what) for h in found] == [
            (control, "a secret"),
            (control, "a DSN with a password"),
        ]


# --- what each ServiceAccount may do ------------------------------------------------------------

# (verb, resource, namespace: None = the release's) → may the operator do it?
OPERATOR: dict[str, list[tuple[str, str, bool]]] = {
    "allowed": [
        ("get", "databasemigrations.migrate-safe.dev", True),
        ("watch", "databasemigrations.migrate-safe.dev", True),
        ("patch", "databasemigrations.migrate-safe.dev/status", True),
        ("create", "jobs.batch", True),
        ("delete", "jobs.batch", True),
        ("list", "pods", True),
        ("create", "configmaps", True),
        ("create", "events", True),
        ("get", "persistentvolumeclaims", True),
    ],
    "refused": [
        ("get", "secrets", False),
        ("list", "secrets", False),  # without fleets (DatabaseMigrationSets) none at all
        ("watch", "secrets", False),
        ("create", "secrets", False),
        ("create", "pods", False),
        ("create", "pods/exec", False),
        ("delete", "pods", False),
        ("delete", "persistentvolumeclaims", False),
        ("create", "serviceaccounts/token", False),
        ("create", "rolebindings.rbac.authorization.k8s.io", False),
        ("escalate", "roles.rbac.authorization.k8s.io", False),
        ("impersonate", "serviceaccounts", False),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
        ("delete", "namespaces", False),
        ("create", "nodes", False),
    ],
}
# The Jobs run as the namespace's default ServiceAccount, which the chart grants nothing.
JOBS_REFUSED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("list", "pods"),
    ("create", "jobs.batch"),
    ("get", "configmaps"),
    ("patch", "databasemigrations.migrate-safe.dev/status"),
    ("create", "events"),
]


def render_rbac(bin_dir: Path, release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [str(bin_dir / "helm"), "template", release, str(CHART), "--namespace", namespace,
         "--set", "operator.peering.enabled=true", "--set", "fleets.enabled=false",
         *[f"--set={s}" for s in sets]],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in kinds]


def kubectl(cluster: devcluster.Cluster, *args: str, stdin: str = "") -> str:
    out = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr  # can-i: 0 yes, 1 no
    return out.stdout.strip()


def can_i(cluster: devcluster.Cluster, who: str, verb: str, resource: str, namespace: str) -> bool:
    answer = kubectl(cluster, "auth", "can-i", verb, resource, "-n", namespace, f"--as={who}")
    assert answer in ("yes", "no"), answer
    return answer == "yes"


@pytest.fixture(params=["namespace", "cluster"])
def installed_rbac(
    request: pytest.FixtureRequest, cluster: devcluster.Cluster, crd: str, namespace: str
) -> Iterator[tuple[str, str]]:
    """The chart's ServiceAccount and RBAC (rbac.scope as the parameter) in `namespace`; the
    operator's user name and the scope."""
    release = f"sec{uuid.uuid4().hex[:5]}"
    objects = render_rbac(cluster.bin_dir, release, namespace, f"rbac.scope={request.param}")
    manifest = yaml.safe_dump_all(objects)
    # The chart's crds/ (kopf's peering CRDs), as `helm install` applies them first: the rules
    # on kopf.dev resources name kinds the API server must know for `can-i` to resolve them.
    kubectl(cluster, "apply", "-f", str(CHART / "crds"))
    kubectl(cluster, "wait", "--for=condition=Established", "-f", str(CHART / "crds"))
    kubectl(cluster, "apply", "-f", "-", stdin=manifest)
    try:
        (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
        yield f"system:serviceaccount:{namespace}:{account}", str(request.param)
    finally:
        kubectl(cluster, "delete", "--ignore-not-found", "-f", "-", stdin=manifest)


def test_service_accounts_may_do_their_work_and_nothing_else(
    installed_rbac: tuple[str, str], cluster: devcluster.Cluster, core: Api, namespace: str
) -> None:
    user, scope = installed_rbac
    # Watching every namespace (cluster scope) peers through a ClusterKopfPeering.
    peering = "clusterkopfpeerings.kopf.dev" if scope == "cluster" else "kopfpeerings.kopf.dev"
    expected = {(v, r): may for v, r, may in OPERATOR["allowed"] + OPERATOR["refused"]}
    expected |= {("patch", peering): True, ("list", "namespaces"): scope == "cluster"}
    answers = {key: can_i(cluster, user, *key, namespace) for key in expected}
    assert answers == expected
    other = f"other-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": other}})
    try:  # cluster scope serves every namespace; namespace scope stays in its own
        assert can_i(cluster, user, "create", "jobs.batch", other) is (scope == "cluster")
    finally:
        core.delete_namespace(other)
    jobs_account = f"system:serviceaccount:{namespace}:default"
    refused = {key: can_i(cluster, jobs_account, *key, namespace) for key in JOBS_REFUSED}
    assert refused == dict.fromkeys(JOBS_REFUSED, False)
