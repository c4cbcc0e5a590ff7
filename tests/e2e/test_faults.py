"""The fault suite: the operator, a Job's harness, PostgreSQL and the control plane killed or
restarted mid-migration, the operator cut off from the API server, two resources on one
database, a Secret rotated and a backup volume full. Each case ends with every version applied
exactly once (or cleanly retried), never half-applied, never Ready when it is not, and asserts
the ledger, the schema fingerprint, the resource's status and the Jobs that ran.

docs/reliability.md tabulates what each case saw. Marked `faults`: .ci/run runs them in a step
of their own."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres, free_port
from tests.conftest import Database
from tests.e2e.conftest import OperatorProcess
from tests.e2e.faults import (
    CuttableProxy,
    api_answers,
    apiserver_address,
    container_state,
    kill_harness,
    kill_operator_when,
    kubeconfig_through,
    restart_component,
    restart_postgres,
    tiny_volume,
)
from tests.e2e.test_operator import (
    GROUP,
    PLURAL,
    VERSION,
    basic_spec,
    condition,
    configmap,
    create,
    example_files,
    get,
    jobs_of,
    patch_spec,
    schema_hash,
    secret,
    wait_condition,
)
from tests.e2e.test_operator_truth import gone, ledger, sleeping

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.faults]

SLOW_SECONDS = 6


def slow_files(down_sleep: bool = False) -> dict[str, str]:
    """Version 1 from the examples, then a transactional version 2 that sleeps first."""
    files = example_files(1)
    files["002_slow.up.sql"] = f"SELECT pg_sleep({SLOW_SECONDS});\nCREATE TABLE slow (id int);"
    pause = f"SELECT pg_sleep({SLOW_SECONDS});\n" if down_sleep else ""
    files["002_slow.down.sql"] = f"{pause}DROP TABLE slow;"
    return files


def backup_claim(core: Api, namespace: str, name: str = "backups") -> None:
    claim = {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)


def with_backup(claim: str = "backups", **extra: Any) -> dict[str, Any]:
    return basic_spec(backup={"enabled": True, "persistentVolumeClaim": claim}, **extra)


def applied_once(db: Database) -> dict[int, int]:
    """How many times each version was applied (the ledger's append-only history)."""
    rows = db.rows(
        "SELECT version, count(*) FROM migrate_safe.history WHERE direction = 'up'"
        " AND outcome = 'succeeded' GROUP BY version ORDER BY version"
    )
    return {int(str(v)): int(str(n)) for v, n in rows}


def job_attempts(batch: Api, namespace: str) -> Counter[tuple[str, str]]:
    """(generation, phase) → how many Jobs ran it."""
    return Counter(
        (
            j.metadata.labels["migrate-safe.dev/generation"],
            j.metadata.labels["migrate-safe.dev/phase"],
        )
        for j in jobs_of(batch, namespace)
    )


def recorded_phases(obj: dict[str, Any]) -> Counter[tuple[int, str]]:
    return Counter((h["generation"], h["phase"]) for h in obj["status"].get("history", []))


def assert_converged(obj: dict[str, Any], db: Database, version: int, reason: str) -> None:
    """Ready with the truth: the version, the fingerprint the database has, not Stalled."""
    status = obj["status"]
    assert status["currentVersion"] == version
    assert condition(obj, "Ready")["reason"] == reason
    assert condition(obj, "Stalled")["status"] == "False"
    assert status["fingerprint"] == schema_hash(db)


def status_has_result(custom: Api, namespace: str, name: str, phase: str) -> bool:
    return phase in get(custom, namespace, name).get("status", {}).get("results", {})


# --- 1. the operator SIGKILLed at each phase, while its Job runs and once it has finished ------

FORWARD_PHASES = ["preflight", "backup", "apply", "postflight"]


@pytest.mark.parametrize("moment", ["running", "finished"])
@pytest.mark.parametrize("phase", [*FORWARD_PHASES, "rollback"])
def test_operator_killed_at_a_phase_adopts_and_converges(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    phase: str,
    moment: str,
) -> None:
    configmap(core, namespace, "migrations", slow_files(down_sleep=True))
    secret(core, namespace, db)
    backup_claim(core, namespace)
    generation = 1
    if phase == "rollback":
        create(custom, namespace, "app", with_backup(rollback={"policy": "Auto"}))
        wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
        patch_spec(custom, namespace, "app", {"targetVersion": 1})
        generation = 2
    else:
        create(custom, namespace, "app", with_backup())

    kill_operator_when(
        operator,
        f"the {phase} container to be {moment}",
        lambda: (
            container_state(core, namespace, phase)
            == ("running" if moment == "running" else "terminated")
        ),
    )
    if moment == "finished":
        # The operator waits for the Job to complete before recording a result: killed now,
        # it cannot have written this phase's status (checked while it is down).
        assert not status_has_result(custom, namespace, "app", phase)
    operator.start()

    if phase == "rollback":
        obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
        assert_converged(obj, db, 1, "RolledBack")
        assert ledger(db) == [(1, "applied")]
        assert db.scalar("SELECT to_regclass('slow')") is None
    else:
        obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
        assert_converged(obj, db, 2, "Migrated")
        assert ledger(db) == [(1, "applied"), (2, "applied")]
    assert applied_once(db) == {1: 1, 2: 1}
    attempts = job_attempts(batch, namespace)
    assert set(attempts.values()) == {1}, f"a phase ran twice: {attempts}"  # no duplicate Job
    assert (str(generation), phase) in attempts
    recorded = recorded_phases(obj)
    assert set(recorded.values()) == {1}, f"a Job was recorded twice: {recorded}"
    assert (generation, phase) in recorded


# --- 2. a Job's harness SIGKILLed mid-migration ------------------------------------------------


def test_harness_killed_in_a_transactional_migration_leaves_nothing_and_is_retried(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", slow_files())
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
    assert kill_harness(core, namespace, "apply") == 1
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
    assert_converged(obj, db, 2, "Migrated")
    assert ledger(db) == [(1, "applied"), (2, "applied")]
    assert applied_once(db) == {1: 1, 2: 1}
    applies = [h for h in obj["status"]["history"] if h["phase"] == "apply"]
    assert [h["outcome"] for h in applies] == ["failed", "succeeded"]  # cleanly retried
    assert job_attempts(batch, namespace)[("1", "apply")] == 2


NO_TRANSACTION = (
    "-- migrate-safe:no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_a ON customers (id);\n"
    f"SELECT pg_sleep({SLOW_SECONDS});\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_b ON customers (id);\n"
)


def test_harness_killed_in_a_no_transaction_migration_reports_the_dirty_version(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    tmp_path: Path,
) -> None:
    files = example_files(1)
    files["002_index.up.sql"] = NO_TRANSACTION
    files["002_index.down.sql"] = (
        "-- migrate-safe:no-transaction\n"
        "DROP INDEX CONCURRENTLY IF EXISTS customers_b;\n"
        "DROP INDEX CONCURRENTLY IF EXISTS customers_a;\n"
    )
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
    assert kill_harness(core, namespace, "apply") == 1
    obj = wait_condition(custom, namespace, "app", "Stalled", "True", timeout=180)
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "ApplyFailed"
    assert "dirty at version 2" in stalled["message"]
    assert "migrate-safe repair" in stalled["message"]  # the way out
    assert condition(obj, "Ready")["status"] == "False"
    assert ledger(db) == [(1, "applied"), (2, "dirty")]

    # The documented recovery (docs/runbook.md, ApplyFailed): look at what ran, undo or finish
    # it by hand, `migrate-safe repair`, then any change to the spec runs a new generation.
    db.execute("DROP INDEX IF EXISTS customers_a")
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for file_name, text in files.items():
        (migrations / file_name).write_text(text)
    repaired = harness_cli(db, migrations, "repair")
    assert repaired.returncode == 0, repaired.stderr
    assert ledger(db) == [(1, "applied")]
    patch_spec(custom, namespace, "app", {"apply": {"lockRetries": 9}})
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
    assert_converged(obj, db, 2, "Migrated")
    assert ledger(db) == [(1, "applied"), (2, "applied")]
    assert db.scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0


def harness_cli(db: Database, migrations: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`migrate-safe` on this machine, as the person recovering runs it."""
    env = {"DATABASE_URL": db.url, "MIGRATIONS_DIR": str(migrations), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "migrate_safe", *args, "--termination-log", "none"],
        env=env,
        cwd=migrations.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- 3. PostgreSQL, the API server and etcd restarted; the operator cut off --------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_during_apply_is_retried_cleanly(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    pg: LocalPostgres,
    mode: str,
) -> None:
    configmap(core, namespace, "migrations", slow_files())
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
    restart_postgres(pg, mode)
    assert db.scalar("SELECT to_regclass('slow')") is None  # nothing half-applied
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
    assert_converged(obj, db, 2, "Migrated")
    assert ledger(db) == [(1, "applied"), (2, "applied")]
    assert applied_once(db) == {1: 1, 2: 1}
    applies = [h for h in obj["status"]["history"] if h["phase"] == "apply"]
    assert [h["outcome"] for h in applies] == ["failed", "succeeded"]


def dumping(db: Database) -> bool:
    """pg_dump waits for the table lock the test holds (seen from PostgreSQL)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
        " AND wait_event_type = 'Lock'"
    )
    return db.scalar(query) == 1


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_during_backup_never_starts_the_apply_half_way(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    pg: LocalPostgres,
    mode: str,
) -> None:
    db.execute("CREATE TABLE held (id int)")
    configmap(core, namespace, "migrations", example_files(2))
    secret(core, namespace, db)
    backup_claim(core, namespace)
    released = threading.Event()

    def hold_the_table() -> None:  # the dump waits behind it, so the restart hits the backup
        try:
            with db.connect() as conn, conn.transaction():
                conn.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
                released.wait(120)
        except psycopg.OperationalError:
            pass  # the restart ends this session, as intended

    holder = threading.Thread(target=hold_the_table)
    holder.start()
    try:
        create(custom, namespace, "app", with_backup())
        wait_for("pg_dump to wait for the table", lambda: dumping(db), timeout=180)
        assert jobs_of(batch, namespace, "apply") == []
        restart_postgres(pg, mode)
    finally:
        released.set()
        holder.join()
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
    assert_converged(obj, db, 2, "Migrated")
    assert applied_once(db) == {1: 1, 2: 1}
    backups = [h["outcome"] for h in obj["status"]["history"] if h["phase"] == "backup"]
    assert backups == ["failed", "succeeded"]
    assert obj["status"]["lastBackup"]["sizeBytes"] > 0
    apply_job = jobs_of(batch, namespace, "apply")
    assert len(apply_job) == 1  # the apply started once, after a verified backup
    first_apply = min(h["startedAt"] for h in obj["status"]["history"] if h["phase"] == "apply")
    last_backup = max(h["finishedAt"] for h in obj["status"]["history"] if h["phase"] == "backup")
    assert first_apply >= last_backup


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restarted_during_a_reconcile(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    cluster: devcluster.Cluster,
    component: str,
) -> None:
    configmap(core, namespace, "migrations", slow_files())
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
    # Down for longer than the migration: its Job finishes while nobody can record it.
    restart_component(cluster, component, down_seconds=SLOW_SECONDS + 2)
    wait_for("the API server to answer again", lambda: api_answers(core), timeout=120)
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
    assert_converged(obj, db, 2, "Migrated")
    assert applied_once(db) == {1: 1, 2: 1}
    attempts = job_attempts(batch, namespace)
    assert set(attempts.values()) == {1}, attempts
    assert set(recorded_phases(obj).values()) == {1}


# Longer than the operator's watch client timeout (settings.watching.client_timeout, 330 s).
CUT_SECONDS = 340


def test_operator_cut_off_from_the_api_server_longer_than_its_watch_timeout(
    crd: str,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    cluster: devcluster.Cluster,
    project_image: str,
    tmp_path: Path,
) -> None:
    proxy = CuttableProxy(apiserver_address(cluster.kubeconfig))
    kubeconfig = kubeconfig_through(cluster.kubeconfig, proxy.port, tmp_path / "kubeconfig")
    operator = OperatorProcess(
        namespace, kubeconfig, tmp_path / "operator.log", free_port(), project_image
    )
    operator.start()
    try:
        configmap(core, namespace, "migrations", slow_files())
        secret(core, namespace, db)
        create(custom, namespace, "app", basic_spec())
        wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
        proxy.cut()
        wait_for(
            "the apply Job to finish unseen",
            lambda: any(j.status.succeeded for j in jobs_of(batch, namespace, "apply")),
            timeout=120,
        )
        cut_at = time.monotonic()
        seen = get(custom, namespace, "app")
        assert condition(seen, "Ready")["status"] == "False"  # never Ready while it cannot know
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))  # the outage itself
        assert condition(get(custom, namespace, "app"), "Ready")["status"] == "False"
        proxy.heal()
        obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=420)
    finally:
        operator.stop()
        proxy.close()
    assert_converged(obj, db, 2, "Migrated")
    assert applied_once(db) == {1: 1, 2: 1}
    assert set(job_attempts(batch, namespace).values()) == {1}
    assert set(recorded_phases(obj).values()) == {1}


# --- 4. concurrency: two resources on one database, a rotated Secret, a full volume ------------


def test_two_resources_on_one_database_are_serialized_and_the_waiting_one_says_so(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    files = example_files(1)
    files["002_long.up.sql"] = "SELECT pg_sleep(40);\nCREATE TABLE long_one (id int);"
    files["002_long.down.sql"] = "DROP TABLE long_one;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "first", basic_spec())
    wait_for("the long migration to run", lambda: sleeping(db), timeout=120)
    create(custom, namespace, "second", basic_spec(preflight={"retryInterval": "5s"}))

    def says_it_waits() -> dict[str, Any] | None:
        obj = get(custom, namespace, "second")
        ready = condition(obj, "Ready")
        waiting = "migrate-safe/apply" in ready.get("message", "")
        return obj if waiting and ready.get("status") == "False" else None

    waiting = wait_for("the second resource to say what it waits for", says_it_waits, 150)
    assert condition(waiting, "Stalled")["status"] == "False"  # waiting, not failed
    assert condition(waiting, "Reconciling")["status"] == "True"
    first = wait_condition(custom, namespace, "first", "Ready", "True", timeout=240)
    second = wait_condition(custom, namespace, "second", "Ready", "True", timeout=240)
    assert_converged(first, db, 2, "Migrated")
    assert second["status"]["currentVersion"] == 2
    assert applied_once(db) == {1: 1, 2: 1}


def test_secret_rotated_during_a_run(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    role = f"rotated_{namespace[-6:]}"
    db.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'first-password'")
    try:
        as_role = db.url.replace("user=postgres", f"user={role}")
        first = as_role.replace(db.server.password, "first-password")
        configmap(core, namespace, "migrations", slow_files())
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "db"}, "stringData": {"DATABASE_URL": first}}
        )
        create(custom, namespace, "app", basic_spec())
        wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
        # Rotation: the new password in the database, then in the Secret; the old one is dead.
        db.execute(f"ALTER ROLE {role} PASSWORD 'second-password'")
        second = as_role.replace(db.server.password, "second-password")
        core.patch_namespaced_secret("db", namespace, {"stringData": {"DATABASE_URL": second}})
        obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=240)
        assert_converged(obj, db, 2, "Migrated")
        assert applied_once(db) == {1: 1, 2: 1}
        assert set(job_attempts(batch, namespace).values()) == {1}
        assert "password" not in str(obj["status"])
    finally:
        db.execute(f"REASSIGN OWNED BY {role} TO postgres")
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_full_backup_volume_never_starts_the_apply_and_names_the_volume(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
    cluster: devcluster.Cluster,
) -> None:
    db.execute(
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
    )
    configmap(core, namespace, "migrations", example_files(2))
    secret(core, namespace, db)
    backup_claim(core, namespace, "nightly-dumps")
    bound = wait_for(
        "the claim to be bound",
        lambda: (
            c
            if (
                c := core.read_namespaced_persistent_volume_claim("nightly-dumps", namespace)
            ).status.phase
            == "Bound"
            else None
        ),
        timeout=60,
    )
    volume = core.read_persistent_volume(bound.spec.volume_name)
    with tiny_volume(cluster, volume.spec.local.path, "64k"):
        create(custom, namespace, "app", with_backup("nightly-dumps"))
        obj = wait_condition(custom, namespace, "app", "Stalled", "True", timeout=180)
        stalled = condition(obj, "Stalled")
        assert stalled["reason"] == "BackupFailed"
        assert "PersistentVolumeClaim nightly-dumps" in stalled["message"]  # the claim by name
        assert "No space left on device" in stalled["message"]
        assert condition(obj, "BackedUp")["status"] == "False"
        assert jobs_of(batch, namespace, "apply") == []
        assert db.scalar("SELECT to_regclass('migrate_safe.applied')") is None or ledger(db) == []


def test_force_deleted_during_a_no_transaction_apply_leaves_a_recorded_dirty_version(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    """The finalizer lets a plain delete wait for the apply (test_operator_truth.py); the
    force-delete annotation stops it: the Job's pod is stopped (SIGTERM), and the harness
    records where it stopped rather than leaving an unexplained dirty row."""
    files = example_files(1)
    files["002_index.up.sql"] = NO_TRANSACTION
    files["002_index.down.sql"] = "SELECT 1;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=120)
    annotations = {"metadata": {"annotations": {"migrate-safe.dev/force-delete": "true"}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "app", annotations)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "app")
    wait_for("the resource to go", lambda: gone(custom, namespace, "app"), timeout=60)
    wait_for("its Jobs to go", lambda: not jobs_of(batch, namespace), timeout=120)
    wait_for("the harness to stop", lambda: not sleeping(db), timeout=60)
    assert ledger(db) == [(1, "applied"), (2, "dirty")]
    recorded = db.rows(
        "SELECT outcome FROM migrate_safe.history WHERE version = 2 AND direction = 'up'"
        " ORDER BY id"
    )
    assert recorded == [("started",), ("interrupted",)]  # the record of where it stopped
