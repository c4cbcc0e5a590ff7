"""The project image on the node, as users run it: the phase Jobs' pods run it (and nothing
else), migrations can come out of an application's own image (source.image), and a backup
outlives the pod that took it, on a PersistentVolume."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

import devcluster
from devcluster import image
from devcluster.testing import Api, Pods, wait_for
from tests.conftest import EXAMPLES, Database
from tests.e2e.conftest import OperatorProcess
from tests.e2e.test_operator import (
    condition,
    configmap,
    create,
    example_files,
    jobs_of,
    secret,
    wait_condition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]

# An application's image as a team would build it: its code (here: none) and its migrations
# at the default path, run as its own non-root user.
APP_CONTAINERFILE = """FROM {base}
COPY migrations/ /migrations/
USER 20000:20000
"""


@pytest.fixture(scope="session")
def app_image(cluster: devcluster.Cluster) -> str:
    files = {f"migrations/{p.name}": p.read_bytes() for p in sorted(EXAMPLES.glob("*.sql"))}
    built = image.ensure_context_image("orders-app", APP_CONTAINERFILE, files)
    cluster.load_image(built)
    return built.ref


def phase_pods(core: Api, namespace: str) -> list[Any]:
    selector = "app.kubernetes.io/managed-by=migrate-safe-operator"
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_migrations_come_out_of_the_application_image(
    operator: OperatorProcess,
    core: Api,
    custom: Api,
    namespace: str,
    db: Database,
    app_image: str,
    project_image: str,
) -> None:
    secret(core, namespace, db)
    spec = {"database": {"secretRef": {"name": "db"}}, "source": {"image": {"name": app_image}}}
    create(custom, namespace, "orders", spec)
    obj = wait_condition(custom, namespace, "orders", "Ready", "True", timeout=240)
    assert obj["status"]["currentVersion"] == 8
    assert condition(obj, "Ready")["reason"] == "Migrated"
    assert db.rows("SELECT max(version) FROM migrate_safe.applied") == [(8,)]
    pods = phase_pods(core, namespace)
    assert {p.metadata.labels["migrate-safe.dev/phase"] for p in pods} >= {"preflight", "apply"}
    for pod in pods:
        (copy,) = pod.status.init_container_statuses
        assert (copy.image, copy.state.terminated.exit_code) == (app_image, 0)
        (harness,) = pod.status.container_statuses
        assert (harness.image, harness.state.terminated.exit_code) == (project_image, 0)


READ_BACKUP = textwrap.dedent("""
    import hashlib, json, subprocess, sys
    path = sys.argv[1]
    listing = subprocess.run(["pg_restore", "--list", path], capture_output=True, text=True,
                             check=True).stdout
    tables = sorted(line.split()[-2] for line in listing.splitlines() if " TABLE public " in line)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    open("/dev/termination-log", "w").write(json.dumps({"sha256": digest, "tables": tables}))
""")


def test_a_backup_outlives_its_pod_on_the_persistent_volume(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    pods: Pods,
    project_image: str,
) -> None:
    configmap(core, namespace, "migrations", example_files())
    secret(core, namespace, db)
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    core.create_namespaced_persistent_volume_claim(
        namespace, {"metadata": {"name": "backups"}, "spec": claim}
    )
    db.execute("CREATE TABLE legacy (id int PRIMARY KEY)")
    backup = {"enabled": True, "persistentVolumeClaim": "backups"}
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "source": {"configMaps": [{"name": "migrations"}]},
        "backup": backup,
    }
    create(custom, namespace, "orders", spec)
    last = wait_condition(custom, namespace, "orders", "Ready", "True")["status"]["lastBackup"]
    (backup_job,) = jobs_of(batch, namespace, "backup")
    assert backup_job.status.succeeded == 1  # its pod is finished; the volume stays

    # Another pod, later, of the same image: the dump is there, intact and restorable.
    reader = {
        "name": "read",
        "image": project_image,
        "command": ["python", "-c", READ_BACKUP, last["path"]],
        "volumeMounts": [{"name": "backups", "mountPath": "/backups", "readOnly": True}],
    }
    volumes = [{"name": "backups", "persistentVolumeClaim": {"claimName": "backups"}}]
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "read-backup"},
            "spec": {"restartPolicy": "Never", "containers": [reader], "volumes": volumes},
        },
    )
    done = wait_for(
        "the reader pod to finish",
        lambda: (
            (p := core.read_namespaced_pod("read-backup", namespace)).status.phase
            in ("Succeeded", "Failed")
            and p
        ),
        timeout=90,
    )
    (status,) = done.status.container_statuses
    assert status.state.terminated.exit_code == 0, pods.log("read-backup", "read")
    found = json.loads(status.state.terminated.message)
    assert found == {"sha256": last["sha256"], "tables": ["legacy"]}
