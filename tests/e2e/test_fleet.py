"""DatabaseMigrationSet end to end: one migration rolled out across many databases of one
PostgreSQL server, canary first then waves, at most maxParallel at once, halting on the
failure budget, a new tenant migrated at once, a lower target rolled back in reverse waves."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from devcluster.testing import Api, wait_for
from migrate_safe.k8s.jobs import label_value
from migrate_safe.localpg import LocalPostgres
from tests.conftest import Database
from tests.e2e.conftest import NodeDatabase, OperatorProcess
from tests.e2e.test_operator import GROUP, PLURAL, VERSION, configmap, example_files, jobs_of

pytestmark = [pytest.mark.e2e, pytest.mark.db]

SETS = "databasemigrationsets"
MEMBER_LABEL = {"migrate-safe.dev/database": "tenant", "fleet": "tenants"}


@pytest.fixture
def databases(pg: LocalPostgres, pg_host: str) -> Iterator[Callable[[int], list[Database]]]:
    """Fresh databases on the session's server, reachable from pods; dropped afterwards."""
    made: list[str] = []

    def make(count: int) -> list[Database]:
        found = []
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            for _ in range(count):
                name = f"t_{uuid.uuid4().hex[:10]}"
                conn.execute(f'CREATE DATABASE "{name}"')
                made.append(name)
                found.append(NodeDatabase(pg, name, pg_host))
        return found

    yield make
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tenant_secret(core: Api, namespace: str, name: str, db: Database) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name, "labels": MEMBER_LABEL},
            "stringData": {"DATABASE_URL": db.url},
        },
    )


def tenants(core: Api, namespace: str, dbs: list[Database]) -> dict[str, Database]:
    found = {f"tenant-{i:02d}": db for i, db in enumerate(dbs)}
    for name, db in found.items():
        tenant_secret(core, namespace, name, db)
    return found


def create_set(custom: Api, namespace: str, strategy: dict[str, Any], **template: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigrationSet",
        "metadata": {"name": "fleet"},
        "spec": {
            "template": {
                "source": {"configMaps": [{"name": "migrations"}]},
                "rollback": {"policy": "Auto"},
                **template,
            },
            "members": {"selector": {"matchLabels": {"fleet": "tenants"}}},
            "strategy": strategy,
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SETS, body)


def get_set(custom: Api, namespace: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SETS, "fleet"))


def patch_template(custom: Api, namespace: str, template: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, "fleet", {"spec": {"template": template}}
    )


def wait_phase(custom: Api, namespace: str, phase: str, timeout: float = 600) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = get_set(custom, namespace)
        status = found.get("status", {})
        fresh = status.get("observedGeneration") == found["metadata"]["generation"]
        return found if fresh and status.get("phase") == phase else None

    return dict(wait_for(f"the set to be {phase}", reached, timeout=timeout))


def ledger_version(db: Database) -> int | None:
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass('migrate_safe.applied')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT max(version) FROM migrate_safe.applied").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def intervals(
    batch: Api, custom: Api, namespace: str, phase: str
) -> list[tuple[str, datetime, datetime]]:
    """(wave, start, end) of every finished Job of a phase, from the Jobs' own timestamps;
    the wave is its DatabaseMigration's label."""
    resources = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    waves = {
        label_value(r["metadata"]["name"]): r["metadata"]["labels"]["migrate-safe.dev/wave"]
        for r in resources
    }
    found = []
    for job in jobs_of(batch, namespace, phase):
        if job.status.start_time and job.status.completion_time:
            wave = waves[job.metadata.labels["migrate-safe.dev/databasemigration"]]
            found.append((wave, job.status.start_time, job.status.completion_time))
    return found


def most_at_once(spans: list[tuple[str, datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    running = most = 0
    for _, step in edges:  # an end before a start at the same second: half-open intervals
        running += step
        most = max(most, running)
    return most


def test_a_fleet_of_20_rolls_out_canary_first_in_waves_at_most_3_at_once(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    databases: Callable[[int], list[Database]],
) -> None:
    configmap(core, namespace, "migrations", example_files(3))
    members = tenants(core, namespace, databases(20))
    create_set(custom, namespace, {"canary": 1, "waveSize": 5, "maxParallel": 3})
    done = wait_phase(custom, namespace, "Succeeded", timeout=900)
    status = done["status"]
    assert status["summary"] == "20/20" and status["members"]["failed"] == 0
    assert status["census"]["byVersion"] == {"3": 20}
    assert status["wave"] == {"current": 5, "total": 5}
    assert all(ledger_version(db) == 3 for db in members.values())
    applies = intervals(batch, custom, namespace, "apply")
    assert len(applies) == 20
    assert most_at_once(applies) <= 3, sorted((str(s), str(e), w) for w, s, e in applies)
    by_wave: dict[str, list[tuple[datetime, datetime]]] = {}
    for wave, start, end in applies:
        by_wave.setdefault(wave, []).append((start, end))
    assert sorted(by_wave) == ["0", "1", "2", "3", "4"] and len(by_wave["0"]) == 1
    for earlier, later in zip("0123", "1234", strict=True):
        assert max(end for _, end in by_wave[earlier]) <= min(s for s, _ in by_wave[later])


def test_a_failing_member_halts_the_set_and_later_waves_stay_untouched(
    operator: OperatorProcess,
    core: Api,
    custom: Api,
    namespace: str,
    databases: Callable[[int], list[Database]],
) -> None:
    configmap(core, namespace, "migrations", example_files(3))
    members = tenants(core, namespace, databases(6))
    conflicting = members["tenant-02"]  # in wave 1, after the canary
    conflicting.execute("CREATE TABLE customers (id int)")
    create_set(custom, namespace, {"canary": 1, "waveSize": 2, "maxParallel": 2})
    halted = wait_phase(custom, namespace, "Halted", timeout=600)
    stalled = next(c for c in halted["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert (
        "tenant-02" in stalled["message"]
        and 'relation "customers" already exists' in (stalled["message"])
    )
    assert halted["status"]["failed"][0]["member"] == "tenant-02"
    for later in ("tenant-03", "tenant-04", "tenant-05"):  # waves 2 and 3: never started
        assert ledger_version(members[later]) is None
    conflicting.execute("DROP TABLE customers")
    patch_template(custom, namespace, {"apply": {"lockRetries": 11}})  # any change of the spec
    resumed = wait_phase(custom, namespace, "Succeeded", timeout=900)
    assert resumed["status"]["summary"] == "6/6"
    assert all(ledger_version(db) == 3 for db in members.values())


def test_a_new_tenant_joins_and_a_lower_target_rolls_back_in_reverse_waves(
    operator: OperatorProcess,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    databases: Callable[[int], list[Database]],
) -> None:
    configmap(core, namespace, "migrations", example_files(3))
    fresh = databases(6)
    members = tenants(core, namespace, fresh[:5])
    create_set(custom, namespace, {"canary": 1, "waveSize": 2, "maxParallel": 1})

    def canary_done() -> bool:
        return ledger_version(members["tenant-00"]) == 3

    wait_for("the canary", canary_done, timeout=300)
    tenant_secret(core, namespace, "tenant-01a", fresh[5])  # a new tenant, mid-rollout
    done = wait_phase(custom, namespace, "Succeeded", timeout=900)
    assert done["status"]["summary"] == "6/6"
    assert ledger_version(fresh[5]) == 3
    patch_template(custom, namespace, {"targetVersion": 1})
    rolled = wait_phase(custom, namespace, "Succeeded", timeout=900)
    assert rolled["status"]["direction"] == "backward"
    assert rolled["status"]["census"]["byVersion"] == {"1": 6}
    assert all(ledger_version(db) == 1 for db in [*members.values(), fresh[5]])
    order = sorted(intervals(batch, custom, namespace, "rollback"), key=lambda span: span[1])
    waves = [int(wave) for wave, _, _ in order]
    assert waves == sorted(waves, reverse=True)  # the last wave first, the canary last
