"""The operator end to end: a real API server, Job controller and garbage collector
(devcluster), a real PostgreSQL, the harness in every Job pod."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.testing import Api, wait_for
from migrate_safe.fingerprint import fingerprint
from tests.conftest import EXAMPLES, Database
from tests.e2e.conftest import OperatorProcess
from tests.e2e.kstatus_trail import kstatus_trail
from tests.gotools import kstatus_of
from tests.metric_names import queried_metrics, served_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.db]

GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"


def example_files(upto: int = 8) -> dict[str, str]:
    return {
        path.name: path.read_text()
        for path in sorted(EXAMPLES.glob("*.sql"))
        if int(path.name.split("_")[0]) <= upto
    }


def configmap(core: Api, namespace: str, name: str, files: dict[str, str]) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": files})


def secret(core: Api, namespace: str, db: Database) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"DATABASE_URL": db.url}}
    )


def create(custom: Api, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": spec,
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def patch_spec(custom: Api, namespace: str, name: str, spec: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def get(custom: Api, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def wait_condition(
    custom: Api, namespace: str, name: str, kind: str, status: str, timeout: float = 120
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get(custom, namespace, name)
        current = condition(obj, kind)
        generation = obj["metadata"]["generation"]
        fresh = obj.get("status", {}).get("observedGeneration") == generation
        return obj if fresh and current.get("status") == status else None

    try:
        return dict(wait_for(f"{name}: {kind}={status}", reached, timeout=timeout))
    except AssertionError as error:
        seen = get(custom, namespace, name).get("status", {})
        raise AssertionError(f"{error}; status was {json.dumps(seen, indent=1)}") from None


def jobs_of(batch: Api, namespace: str, phase: str | None = None) -> list[Any]:
    selector = "app.kubernetes.io/managed-by=migrate-safe-operator"
    if phase:
        selector += f",migrate-safe.dev/phase={phase}"
    return list(batch.list_namespaced_job(namespace, label_selector=selector).items)


def basic_spec(**extra: Any) -> dict[str, Any]:
    return {
        "database": {"secretRef": {"name": "db"}},
        "source": {"configMaps": [{"name": "migrations"}]},
        **extra,
    }


def schema_hash(db: Database) -> str:
    with db.connect() as conn:
        return fingerprint(conn, "migrate_safe").hash


def reader_age(db: Database) -> float:
    """Seconds the nightly-report session has been in its transaction (0 before it begins)."""
    age = db.scalar(
        "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8"
        " FROM pg_stat_activity WHERE application_name = 'nightly-report'"
    )
    assert isinstance(age, float)
    return age


def test_happy_path_runs_the_phases_in_order_to_ready(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files())
    secret(core, namespace, db)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "backups"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    spec = basic_spec(backup={"enabled": True, "persistentVolumeClaim": "backups"})
    with kstatus_trail(custom, namespace, "orders", operator.log_path.parent) as trail:
        create(custom, namespace, "orders", spec)
        obj = wait_condition(custom, namespace, "orders", "Ready", "True")
        trail.wait_seen(obj)
    # What Flux and `kubectl wait` see: in progress through every phase, then Current.
    verdicts = trail.by_phase()
    assert verdicts.pop(("Succeeded", "Migrated")) == {"Current"}
    assert set().union(*verdicts.values()) == {"InProgress"}
    running = {"Preflight", "BackingUp", "Applying", "Postflight"}
    assert running <= {phase for phase, _ in verdicts}
    status = obj["status"]
    assert (status["phase"], status["currentVersion"]) == ("Succeeded", 8)
    assert condition(obj, "Ready")["reason"] == "Migrated"
    assert condition(obj, "Stalled")["status"] == "False"
    for kind in ("PreflightPassed", "BackedUp", "Applied", "PostflightPassed"):
        assert condition(obj, kind)["status"] == "True", kind
    assert [h["phase"] for h in status["history"]] == ["preflight", "backup", "apply", "postflight"]
    assert status["lastBackup"]["sizeBytes"] > 0 and len(status["lastBackup"]["sha256"]) == 64
    assert status["fingerprint"] == schema_hash(db)
    rows = db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY version")
    assert rows == [(v, "applied") for v in range(1, 9)]
    apply_job = jobs_of(batch, namespace, "apply")[0]
    assert apply_job.spec.backoff_limit == 0
    pod_spec = apply_job.spec.template.spec
    assert pod_spec.automount_service_account_token is False
    env = pod_spec.containers[0].env[0]
    assert env.value_from.secret_key_ref.name == "db" and env.value is None
    scraped = operator.metrics()
    assert (
        f'migrate_safe_phase_runs_total{{name="orders",namespace="{namespace}",'
        'outcome="succeeded",phase="apply"} 1.0'
    ) in scraped
    assert (
        f'migrate_safe_migrations_applied_total{{name="orders",namespace="{namespace}"}} 8.0'
        in scraped
    )
    assert f'migrate_safe_ready{{name="orders",namespace="{namespace}"}} 1.0' in scraped
    assert queried_metrics() - served_metrics(scraped) == set()  # alerts, dashboard, promtool
    reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
    assert {"PreflightStarted", "ApplySucceeded", "Migrated"} <= reasons


def test_failing_migration_stalls_with_the_postgres_error_and_applies_nothing(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    files = example_files(2)
    files["003_broken.up.sql"] = (
        "CREATE TABLE half (id int);\nALTER TABLE nowhere ADD COLUMN x int;"
    )
    files["003_broken.down.sql"] = "DROP TABLE half;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "broken", basic_spec())
    obj = wait_condition(custom, namespace, "broken", "Stalled", "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "ApplyFailed"
    assert kstatus_of(obj) == "Failed"
    assert 'relation "nowhere" does not exist' in stalled["message"]
    assert "003_broken.up.sql:2" in stalled["message"] and "42P01" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert db.scalar("SELECT to_regclass('half')") is None  # nothing half-applied
    assert db.rows("SELECT max(version) FROM migrate_safe.applied") == [(2,)]
    failed = jobs_of(batch, namespace, "apply")
    assert len(failed) == 1 and failed[0].status.failed == 1  # kept for inspection


def test_long_transaction_on_a_touched_table_blocks_preflight_until_it_ends(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY)")
    configmap(
        core,
        namespace,
        "migrations",
        {
            "001_note.up.sql": "ALTER TABLE accounts ADD COLUMN note text;",
            "001_note.down.sql": "ALTER TABLE accounts DROP COLUMN note;",
        },
    )
    secret(core, namespace, db)
    release = threading.Event()

    def long_reader() -> None:
        with db.connect(application_name="nightly-report") as conn, conn.transaction():
            conn.execute("SELECT count(*) FROM accounts")
            release.wait(120)

    reader = threading.Thread(target=long_reader)
    reader.start()
    try:
        wait_for("the reader's transaction to pass the 1 s threshold", lambda: reader_age(db) > 1.2)
        spec = basic_spec(preflight={"longTransactionSeconds": 1, "retryInterval": "3s"})
        create(custom, namespace, "accounts", spec)
        obj = wait_condition(custom, namespace, "accounts", "PreflightPassed", "False")
        blocked = condition(obj, "PreflightPassed")
        assert blocked["reason"] == "PreflightBlocked"
        assert "nightly-report" in blocked["message"] and "accounts" in blocked["message"]
        assert condition(obj, "Stalled")["status"] == "False"  # transient: retried, not failed
        assert kstatus_of(obj) == "InProgress"
        # Retried, not given up: a second preflight Job, and still no apply Job.
        wait_for("a retried preflight", lambda: len(jobs_of(batch, namespace, "preflight")) >= 2)
        assert jobs_of(batch, namespace, "apply") == []
    finally:
        release.set()
        reader.join()
    obj = wait_condition(custom, namespace, "accounts", "Ready", "True")
    assert obj["status"]["currentVersion"] == 1
    assert len(jobs_of(batch, namespace, "preflight")) >= 2


def test_plan_mode_publishes_a_hash_that_approval_must_match(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files(4))
    secret(core, namespace, db)
    create(custom, namespace, "planned", basic_spec(mode="Plan"))
    obj = wait_condition(custom, namespace, "planned", "Ready", "True")
    plan = obj["status"]["plan"]
    assert condition(obj, "Ready")["reason"] == "Planned"
    assert kstatus_of(obj) == "Current"
    assert len(plan["hash"]) == 64
    assert [m["version"] for m in plan["migrations"]] == [1, 2, 3, 4]
    assert "AccessExclusiveLock public.customers" in plan["migrations"][0]["locks"]
    assert jobs_of(batch, namespace, "apply") == []
    assert db.scalar("SELECT to_regclass('customers')") is None  # the rehearsal changed nothing
    patch_spec(custom, namespace, "planned", {"mode": "Apply", "approval": {"planHash": "0" * 64}})
    waiting = wait_condition(custom, namespace, "planned", "Reconciling", "True")
    wait_for(
        "AwaitingApproval",
        lambda: (
            condition(get(custom, namespace, "planned"), "Ready").get("reason")
            == "AwaitingApproval"
        ),
        timeout=60,
    )
    assert waiting["status"]["observedGeneration"] == 2
    assert kstatus_of(get(custom, namespace, "planned")) == "InProgress"
    awaiting = condition(get(custom, namespace, "planned"), "Ready")["message"]
    assert f"does not match the current plan {plan['hash']}" in awaiting
    patch_spec(custom, namespace, "planned", {"approval": {"planHash": plan["hash"]}})
    obj = wait_condition(custom, namespace, "planned", "Ready", "True")
    assert obj["status"]["currentVersion"] == 4
    assert condition(obj, "Ready")["reason"] == "Migrated"


def test_lowering_target_version_rolls_back_to_the_earlier_fingerprint(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files())
    secret(core, namespace, db)
    create(custom, namespace, "orders", basic_spec(targetVersion=5, rollback={"policy": "Auto"}))
    at_five = wait_condition(custom, namespace, "orders", "Ready", "True")["status"]["fingerprint"]
    patch_spec(custom, namespace, "orders", {"targetVersion": 8})
    obj = wait_condition(custom, namespace, "orders", "Ready", "True")
    assert obj["status"]["currentVersion"] == 8
    with kstatus_trail(custom, namespace, "orders", operator.log_path.parent) as trail:
        patch_spec(custom, namespace, "orders", {"targetVersion": 5})
        obj = wait_condition(custom, namespace, "orders", "RolledBack", "True")
        obj = wait_condition(custom, namespace, "orders", "Ready", "True")
        trail.wait_seen(obj)
    assert trail.by_phase()[("RollingBack", "RollingBack")] == {"InProgress"}
    assert trail.final() == "Current"
    assert obj["status"]["currentVersion"] == 5
    assert condition(obj, "Ready")["reason"] == "RolledBack"
    assert obj["status"]["fingerprint"] == at_five == schema_hash(db)
    assert db.rows("SELECT max(version) FROM migrate_safe.applied") == [(5,)]


def test_reverted_source_rolls_back_with_down_sql_from_the_ledger(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files())
    secret(core, namespace, db)
    create(custom, namespace, "orders", basic_spec(rollback={"policy": "Manual"}))
    wait_condition(custom, namespace, "orders", "Ready", "True")
    # The revert: a new ConfigMap (as a configMapGenerator names it) without versions 7 and 8,
    # so their down SQL can only come from the ledger.
    configmap(core, namespace, "migrations-reverted", example_files(6))
    source = {"source": {"configMaps": [{"name": "migrations-reverted"}]}}
    patch_spec(custom, namespace, "orders", source)
    obj = wait_for(
        "the rollback to await approval",
        lambda: (
            o
            if condition(o := get(custom, namespace, "orders"), "RolledBack").get("reason")
            == "RollbackAwaitingApproval"
            else None
        ),
        timeout=120,
    )
    assert "approvedTargetVersion: 6" in condition(obj, "RolledBack")["message"]
    assert kstatus_of(obj) == "InProgress"
    patch_spec(custom, namespace, "orders", {"rollback": {"approvedTargetVersion": 6}})
    obj = wait_condition(custom, namespace, "orders", "Ready", "True")
    assert obj["status"]["currentVersion"] == 6
    assert db.scalar("SELECT to_regclass('coupons')") is None


def test_killed_operator_adopts_the_running_apply_job(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    files = example_files(2)
    files["003_slow.up.sql"] = "SELECT pg_sleep(6);\nCREATE TABLE slow (id int);"
    files["003_slow.down.sql"] = "DROP TABLE slow;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "slow", basic_spec())
    wait_for("the apply Job", lambda: jobs_of(batch, namespace, "apply"), timeout=90)
    operator.kill()
    operator.start()
    obj = wait_condition(custom, namespace, "slow", "Ready", "True")
    assert obj["status"]["currentVersion"] == 3
    assert len(jobs_of(batch, namespace, "apply")) == 1
    applied = db.rows(
        "SELECT version, count(*) FROM migrate_safe.history WHERE direction = 'up'"
        " AND outcome = 'succeeded' GROUP BY version ORDER BY version"
    )
    assert applied == [(1, 1), (2, 1), (3, 1)]


def test_missing_secret_and_configmap_stall_and_recover_by_themselves(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    create(custom, namespace, "orders", basic_spec())
    obj = wait_condition(custom, namespace, "orders", "Stalled", "True")
    assert condition(obj, "Stalled")["reason"] == "SourceNotFound"
    assert "migrations" in condition(obj, "Stalled")["message"]
    configmap(core, namespace, "migrations", example_files(2))
    obj = wait_for(
        "the missing Secret to be reported",
        lambda: (
            o
            if condition(o := get(custom, namespace, "orders"), "Stalled").get("reason")
            == "ConfigNotFound"
            else None
        ),
        timeout=90,
    )
    assert 'secret "db" not found' in condition(obj, "Stalled")["message"]
    secret(core, namespace, db)
    obj = wait_condition(custom, namespace, "orders", "Ready", "True")
    assert obj["status"]["currentVersion"] == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"source": {"configMaps": [{"name": "a"}], "inline": {"001_a.up.sql": "x"}}},
            "spec.source",
        ),
        ({"targetVersion": 0}, "spec.targetVersion"),
        ({"apply": {"lockTimeout": "5 seconds"}}, "spec.apply.lockTimeout"),
        ({"apply": {"lockTimeout": "20s", "lockTimeoutMax": "10s"}}, "spec.apply"),
        ({"mode": "Yolo"}, "spec.mode"),
        ({"backup": {"enabled": True}}, "spec.backup"),
        ({"source": {"inline": {"notes.txt": "x"}}}, "spec.source.inline"),
        ({"approval": {"planHash": "abc"}}, "spec.approval.planHash"),
        ({"apply": {"lockTimeout": "0s"}}, "spec.apply.lockTimeout"),
        (
            {"database": {"secretRef": {"name": "db"}, "ledgerSchema": "public"}},
            "spec.database.ledgerSchema",
        ),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(
    crd: str, custom: Api, namespace: str, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as raised:
        create(custom, namespace, "bad", {**basic_spec(), **change})
    assert raised.value.status == 422
    assert field in str(raised.value.body)


def test_database_reference_is_immutable(crd: str, custom: Api, namespace: str) -> None:
    create(custom, namespace, "orders", basic_spec())
    with pytest.raises(ApiException) as raised:
        patch_spec(custom, namespace, "orders", {"database": {"secretRef": {"name": "other"}}})
    assert "spec.database is immutable" in str(raised.value.body)
