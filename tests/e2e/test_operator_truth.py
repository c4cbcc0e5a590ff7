"""The operator tells the truth through what GitOps users do to a resource: re-create it, change
its spec while a Job runs, give it a long name, point it at a database that is briefly away,
delete it mid-migration, ask for a version that does not exist."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.testing import Api, wait_for
from tests.conftest import Database
from tests.e2e.conftest import OperatorProcess
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
    secret,
    wait_condition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]

SLOW = "SELECT pg_sleep(8);\nCREATE TABLE slow (id int);"


def slow_files() -> dict[str, str]:
    files = example_files(1)
    files["002_slow.up.sql"] = SLOW
    files["002_slow.down.sql"] = "DROP TABLE slow;"
    return files


def sleeping(db: Database) -> bool:
    """The apply Job is inside its slow migration (seen from PostgreSQL, not guessed)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate-safe/apply'"
        " AND query LIKE 'SELECT pg_sleep%' AND state = 'active'"
    )
    return db.scalar(query) == 1


def events_of(core: Api, namespace: str, name: str) -> list[Any]:
    return [
        e for e in core.list_namespaced_event(namespace).items if e.involved_object.name == name
    ]


def gone(custom: Api, namespace: str, name: str) -> bool:
    try:
        get(custom, namespace, name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def ledger(db: Database) -> list[tuple[object, ...]]:
    return db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY version")


def test_a_recreated_resource_runs_its_own_jobs_and_never_adopts_old_ones(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "m1", example_files(2))
    secret(core, namespace, db)
    create(custom, namespace, "app", {**basic_spec(), "source": {"configMaps": [{"name": "m1"}]}})
    wait_condition(custom, namespace, "app", "Ready", "True")
    old_jobs = {job.metadata.name for job in jobs_of(batch, namespace)}
    configmap(core, namespace, "m2", example_files(3))
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "app", propagation_policy="Orphan"
    )
    wait_for("the old resource to go", lambda: gone(custom, namespace, "app"), timeout=60)
    assert old_jobs <= {job.metadata.name for job in jobs_of(batch, namespace)}  # orphaned
    create(custom, namespace, "app", {**basic_spec(), "source": {"configMaps": [{"name": "m2"}]}})
    obj = wait_condition(custom, namespace, "app", "Ready", "True")
    assert obj["status"]["currentVersion"] == 3
    assert ledger(db) == [(1, "applied"), (2, "applied"), (3, "applied")]
    ran = [h["job"] for h in obj["status"]["history"]]
    assert ran and not set(ran) & old_jobs
    wait_for(
        "the orphaned Jobs to be cleaned up",
        lambda: not old_jobs & {job.metadata.name for job in jobs_of(batch, namespace)},
        timeout=60,
    )
    uid = obj["metadata"]["uid"]
    mine = [e for e in events_of(core, namespace, "app") if e.involved_object.uid == uid]
    assert not [e for e in mine if any(name in e.message for name in old_jobs)]
    succeeded = [e.message for e in mine if e.reason == "ApplySucceeded"]
    assert len(succeeded) == 1 and "applied 3; at version 3" in succeeded[0]


def test_a_spec_change_during_apply_waits_for_it_and_records_it(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", slow_files())
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=90)
    patch_spec(custom, namespace, "app", {"apply": {"lockTimeout": "1s"}})
    waiting = wait_for(
        "the new generation to wait",
        lambda: (
            o
            if condition(o := get(custom, namespace, "app"), "Ready").get("reason")
            == "PreviousGenerationRunning"
            else None
        ),
        timeout=30,
    )
    assert waiting["status"]["observedGeneration"] == 2
    assert "-g1-apply" in condition(waiting, "Ready")["message"]
    assert condition(waiting, "Stalled")["status"] == "False"
    assert len(jobs_of(batch, namespace, "apply")) == 1  # never two applies at once
    obj = wait_condition(custom, namespace, "app", "Ready", "True")
    assert obj["status"]["currentVersion"] == 2
    assert condition(obj, "Applied")["reason"] == "UpToDate"  # generation 2 had nothing to do
    applies = [h for h in obj["status"]["history"] if h["phase"] == "apply"]
    assert [(h["generation"], h["outcome"]) for h in applies] == [(1, "succeeded")]
    assert ledger(db) == [(1, "applied"), (2, "applied")]
    scraped = operator.metrics()
    assert f'migrate_safe_migrations_applied_total{{name="app",namespace="{namespace}"}} 2.0' in (
        scraped
    )


def test_a_target_lowered_during_apply_rolls_back_after_it(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", slow_files())
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec(rollback={"policy": "Auto"}))
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=90)
    patch_spec(custom, namespace, "app", {"targetVersion": 1})
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=180)
    assert condition(obj, "Ready")["reason"] == "RolledBack"
    assert obj["status"]["currentVersion"] == 1
    assert ledger(db) == [(1, "applied")]
    assert db.scalar("SELECT to_regclass('slow')") is None


def test_a_name_longer_than_63_characters_works(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    name = "orders-" + "x" * 70
    configmap(core, namespace, "migrations", example_files(2))
    secret(core, namespace, db)
    create(custom, namespace, name, basic_spec())
    obj = wait_condition(custom, namespace, name, "Ready", "True")
    assert obj["status"]["currentVersion"] == 2


def test_an_unreachable_database_is_retried_until_the_secret_is_fixed(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files(2))
    wrong = db.url.replace(db.server.password, "not-the-password")
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"DATABASE_URL": wrong}}
    )
    create(custom, namespace, "app", basic_spec())
    obj = wait_for(
        "the transient failure",
        lambda: (
            o
            if condition(o := get(custom, namespace, "app"), "Ready").get("reason")
            == "TransientFailure"
            else None
        ),
        timeout=90,
    )
    assert condition(obj, "Stalled")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "True"
    assert "password authentication failed" in condition(obj, "Ready")["message"]
    assert "not-the-password" not in str(obj)
    core.patch_namespaced_secret("db", namespace, {"stringData": {"DATABASE_URL": db.url}})
    obj = wait_condition(custom, namespace, "app", "Ready", "True", timeout=120)
    assert obj["status"]["currentVersion"] == 2
    assert obj["metadata"]["generation"] == 1  # no spec change was needed


def test_deleting_during_a_no_transaction_apply_lets_it_finish(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    files = example_files(1)
    files["002_index.up.sql"] = (
        "-- migrate-safe:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_a ON customers (id);\n"
        "SELECT pg_sleep(6);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_b ON customers (id);\n"
    )
    files["002_index.down.sql"] = (
        "-- migrate-safe:no-transaction\n"
        "DROP INDEX CONCURRENTLY IF EXISTS customers_b;\n"
        "DROP INDEX CONCURRENTLY IF EXISTS customers_a;\n"
    )
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    wait_for("the slow migration to run", lambda: sleeping(db), timeout=90)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "app")
    held = get(custom, namespace, "app")
    assert held["metadata"].get("deletionTimestamp")  # held by the finalizer
    wait_for("the resource to go", lambda: gone(custom, namespace, "app"), timeout=120)
    assert ledger(db) == [(1, "applied"), (2, "applied")]  # finished, not dirty
    assert db.scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert "deletion waits for apply Job" in operator.log_path.read_text()


def test_a_target_version_missing_from_the_source_is_an_invalid_spec(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files(2))
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec(targetVersion=9))
    obj = wait_condition(custom, namespace, "app", "Stalled", "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.targetVersion" in stalled["message"] and "9" in stalled["message"]
    assert jobs_of(batch, namespace, "apply") == []


def test_a_partly_applied_run_reports_where_it_stopped_once(
    operator: OperatorProcess, core: Api, custom: Api, namespace: str, db: Database
) -> None:
    files = example_files(1)
    files["002_broken.up.sql"] = "ALTER TABLE nowhere ADD COLUMN x int;"
    files["002_broken.down.sql"] = "SELECT 1;"
    configmap(core, namespace, "migrations", files)
    secret(core, namespace, db)
    create(custom, namespace, "app", basic_spec())
    obj = wait_condition(custom, namespace, "app", "Stalled", "True")
    assert obj["status"]["currentVersion"] == 1
    assert obj["status"]["pendingCount"] == 1
    message = condition(obj, "Stalled")["message"]
    assert message.count("SQLSTATE") == 1 and message.count("002_broken.up.sql:1") == 1
    # The Event and the log line follow the status write: wait for them, then count.
    warnings = wait_for(
        "the ApplyFailed Event",
        lambda: [e for e in events_of(core, namespace, "app") if e.type == "Warning"],
    )
    assert [e.reason for e in warnings] == ["ApplyFailed"]
    wait_for(
        "the log line", lambda: f"{namespace}/app: ApplyFailed" in operator.log_path.read_text()
    )
