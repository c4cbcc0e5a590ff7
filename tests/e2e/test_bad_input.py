"""Malformed and hostile input, table-driven on one cluster: each DatabaseMigration is either
refused by the API server with a message naming the field, or taken by the operator to a
condition that says what is wrong, and nothing reaches the database."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import devcluster
from devcluster.testing import Api, wait_for
from migrate_safe.localpg import LocalPostgres, free_port
from tests.conftest import Database
from tests.e2e.artefacts import Collector
from tests.e2e.conftest import NodeDatabase, OperatorProcess
from tests.e2e.test_operator import (
    GROUP,
    PLURAL,
    VERSION,
    basic_spec,
    condition,
    configmap,
    create,
    get,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]

KIB = 1024
LONG_NAME = "a" * 253  # the longest object name the API server takes
UP = "001_table.up.sql"


# --- refused by the API server ---------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A spec (basic_spec with `change` merged in) or a name the API server must refuse,
    saying `field`."""

    change: dict[str, Any]
    field: str
    name: str = ""  # default: one of its own, so that a wrongly accepted case spoils no other
    status: int = 422


def inline(files: dict[str, str]) -> dict[str, Any]:
    return {"source": {"inline": files}}


REFUSED: dict[str, Refused] = {
    "targetVersion as a string": Refused({"targetVersion": "three"}, "spec.targetVersion"),
    "targetVersion negative": Refused({"targetVersion": -5}, "spec.targetVersion"),
    "targetVersion beyond int64": Refused({"targetVersion": 2**64}, "spec.targetVersion"),
    "targetVersion fractional": Refused({"targetVersion": 1.5}, "spec.targetVersion"),
    "mode as a number": Refused({"mode": 7}, "spec.mode"),
    "longTransactionSeconds zero": Refused(
        {"preflight": {"longTransactionSeconds": 0}}, "spec.preflight.longTransactionSeconds"
    ),
    "longTransactionSeconds huge": Refused(
        {"preflight": {"longTransactionSeconds": 10**12}}, "spec.preflight.longTransactionSeconds"
    ),
    "retryInterval negative": Refused(
        {"preflight": {"retryInterval": "-30s"}}, "spec.preflight.retryInterval"
    ),
    "failOn unknown check": Refused({"preflight": {"failOn": ["Nope"]}}, "spec.preflight.failOn"),
    "lockRetries negative": Refused({"apply": {"lockRetries": -1}}, "spec.apply.lockRetries"),
    "statementTimeout in years": Refused(
        {"apply": {"statementTimeout": "1y"}}, "spec.apply.statementTimeout"
    ),
    "backup retention huge": Refused(
        {"backup": {"enabled": False, "retention": 1000}}, "spec.backup.retention"
    ),
    "backup enabled as a string": Refused({"backup": {"enabled": "yes"}}, "spec.backup.enabled"),
    "rollback policy unknown": Refused(
        {"rollback": {"policy": "Sometimes"}}, "spec.rollback.policy"
    ),
    "approvedTargetVersion negative": Refused(
        {"rollback": {"approvedTargetVersion": -1}}, "spec.rollback.approvedTargetVersion"
    ),
    "expectedFingerprint not hex": Refused(
        {"postflight": {"expectedFingerprint": "xyz"}}, "spec.postflight.expectedFingerprint"
    ),
    "planHash upper case": Refused({"approval": {"planHash": "A" * 64}}, "spec.approval.planHash"),
    "configMaps as a string": Refused(
        {"source": {"configMaps": "migrations"}}, "spec.source.configMaps"
    ),
    "configMaps empty": Refused({"source": {"configMaps": []}}, "spec.source.configMaps"),
    "configMaps 21 of them": Refused(
        {"source": {"configMaps": [{"name": f"m{i}"} for i in range(21)]}},
        "spec.source.configMaps",
    ),
    "configMap name in unicode": Refused(
        {"source": {"configMaps": [{"name": "миграции"}]}}, "spec.source.configMaps[0].name"
    ),
    "no source at all": Refused({"source": {}}, "spec.source"),
    "image path relative": Refused(
        {"source": {"image": {"name": "app:1", "path": "migrations"}}}, "spec.source.image.path"
    ),
    "inline file of 1 MiB": Refused(
        inline({UP: "-- x\n" * (1024 * KIB // 5)}), "spec.source.inline"
    ),
    "inline source of 1 MiB in all": Refused(
        inline({f"{i:03}_f.up.sql": "-- x\n" * (64 * KIB // 5) for i in range(1, 17)}),
        "spec.source.inline: at most 128 KiB in all",
    ),
    "inline source just over 128 KiB": Refused(
        inline({f"{i:03}_f.up.sql": "x" * (43 * KIB) for i in range(1, 4)}),
        "spec.source.inline: at most 128 KiB in all",
    ),
    "inline key escaping the directory": Refused(
        inline({"../001_x.up.sql": "SELECT 1;"}), "spec.source.inline"
    ),
    "inline key in unicode": Refused(
        inline({"001_café.up.sql": "SELECT 1;"}), "spec.source.inline"
    ),
    "inline key with a space": Refused(
        inline({"001_two words.up.sql": "SELECT 1;"}), "spec.source.inline"
    ),
    "inline 101 files": Refused(
        inline({f"{i:03}_f.up.sql": "SELECT 1;" for i in range(1, 102)}), "spec.source.inline"
    ),
    "secretRef name with capitals": Refused(
        {"database": {"secretRef": {"name": "Bad_Name"}}}, "spec.database.secretRef.name"
    ),
    "secretRef name of 254 characters": Refused(
        {"database": {"secretRef": {"name": "a" * 254}}}, "spec.database.secretRef.name"
    ),
    "secretRef key with a slash": Refused(
        {"database": {"secretRef": {"name": "db", "key": "a/b"}}}, "spec.database.secretRef.key"
    ),
    "database missing": Refused({"database": None}, "spec.database"),
    "jobTemplate deadline zero": Refused(
        {"jobTemplate": {"activeDeadlineSeconds": 0}}, "spec.jobTemplate.activeDeadlineSeconds"
    ),
    "jobTemplate 51 tolerations": Refused(
        {"jobTemplate": {"tolerations": [{"key": f"k{i}"} for i in range(51)]}},
        "spec.jobTemplate.tolerations",
    ),
    "phase serviceAccountName of 300 characters": Refused(
        {"phases": {"apply": {"serviceAccountName": "s" * 300}}},
        "spec.phases.apply.serviceAccountName",
    ),
    "name in unicode": Refused({}, "metadata.name", name="миграция"),
    "name of 254 characters": Refused({}, "metadata.name", name="a" * 254),
    "name with an underscore": Refused({}, "metadata.name", name="orders_db"),
}


@pytest.fixture(scope="module")
def shared_namespace(core: Api) -> Iterator[str]:
    name = "bad-input-api"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_api_server_refuses_naming_the_field(
    crd: str, custom: Api, shared_namespace: str, case: Refused
) -> None:
    spec = {k: v for k, v in {**basic_spec(), **case.change}.items() if v is not None}
    name = case.name or f"bad-{list(REFUSED.values()).index(case)}"
    with pytest.raises(ApiException) as raised:
        create(custom, shared_namespace, name, spec)
    message = json.loads(raised.value.body)["message"]
    assert raised.value.status == case.status, message
    assert case.field in message, message
    assert len(message) < 4 * KIB, "the refusal quotes a short value, not the whole input"


def test_nothing_refused_was_stored(crd: str, custom: Api, shared_namespace: str) -> None:
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, shared_namespace, PLURAL)
    assert listed["items"] == []


# --- taken in, and reported by the operator ------------------------------------------------------


@dataclass
class Bench:
    """One namespace and one database that every case below shares, with the operator."""

    core: Api
    custom: Api
    namespace: str
    database: Database
    cluster: devcluster.Cluster
    api_server: str  # host:port of the API server as pods reach it
    made: list[str] = field(default_factory=list)

    def secret(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "stringData": data}
        self.core.create_namespaced_secret(self.namespace, body)

    def dsn(self, **changes: Any) -> str:
        parts = {**conninfo_to_dict(self.database.url), **changes}
        return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


def files_for(name: str) -> dict[str, str]:
    """One migration that would leave a table named after the case if it ever ran."""
    table = name.replace("-", "_")
    return {UP: f"CREATE TABLE {table} (id int);", "001_table.down.sql": f"DROP TABLE {table};"}


@dataclass(frozen=True)
class Reported:
    """A resource the API server takes but the operator must report: `setup` makes what it
    refers to and returns its spec; `kind`'s condition ends with `reason` and `message`."""

    setup: Callable[[Bench, str], dict[str, Any]]
    reason: str
    message: str
    kind: str = "Stalled"


def with_secret(data: Callable[[Bench], dict[str, str]], **spec: Any) -> Callable[..., Any]:
    def setup(bench: Bench, name: str) -> dict[str, Any]:
        bench.secret(name, data(bench))
        configmap(bench.core, bench.namespace, name, files_for(name))
        return {
            "database": {"secretRef": {"name": name, **spec.pop("ref", {})}},
            "source": {"configMaps": [{"name": name}]},
            **spec,
        }

    return setup


def with_configmap(body: Callable[[str], dict[str, Any]], **spec: Any) -> Callable[..., Any]:
    def setup(bench: Bench, name: str) -> dict[str, Any]:
        bench.core.create_namespaced_config_map(
            bench.namespace, {**body(name), "metadata": {"name": name}}
        )
        return basic_spec(source={"configMaps": [{"name": name}]}, **spec)

    return setup


def with_inline(files: Callable[[str], dict[str, str]], **spec: Any) -> Callable[..., Any]:
    def setup(bench: Bench, name: str) -> dict[str, Any]:
        return basic_spec(source={"inline": files(name)}, **spec)

    return setup


def binary(files: dict[str, bytes]) -> dict[str, Any]:
    return {"binaryData": {k: base64.b64encode(v).decode() for k, v in files.items()}}


REPORTED: dict[str, Reported] = {
    "secret key that does not exist": Reported(
        with_secret(lambda b: {"DATABASE_URL": b.database.url}, ref={"key": "NOPE"}),
        "ConfigNotFound",
        "couldn't find key NOPE in Secret",
    ),
    "DSN without a host": Reported(
        with_secret(lambda b: {"DATABASE_URL": b.dsn(host=None)}),
        "TransientFailure",
        "socket",
        kind="Ready",
    ),
    "DSN pointing at the API server": Reported(
        with_secret(
            lambda b: {
                "DATABASE_URL": b.dsn(
                    host=b.api_server.split(":")[0], port=b.api_server.split(":")[1]
                )
            }
        ),
        "TransientFailure",
        "cannot connect to",
        kind="Ready",
    ),
    "DSN that is not a DSN": Reported(
        with_secret(lambda b: {"DATABASE_URL": "this is not a dsn"}),
        "PreflightFailed",
        "DATABASE_URL",
    ),
    "empty DSN": Reported(
        with_secret(lambda b: {"DATABASE_URL": ""}),
        "PreflightFailed",
        "DATABASE_URL",
    ),
    "targetVersion not in the source": Reported(
        with_inline(files_for, targetVersion=99),
        "InvalidSpec",
        "spec.targetVersion",
    ),
    "binaryData migration that is not UTF-8": Reported(
        with_configmap(lambda n: binary({UP: b"CREATE TABLE t\xff\xfe (id int);"})),
        "PreflightFailed",
        UP,
    ),
    "a down file without its up file": Reported(
        with_configmap(lambda n: {"data": {"001_table.down.sql": "DROP TABLE x;"}}),
        "PreflightFailed",
        "001_table.down.sql",
    ),
    "two files for one version": Reported(
        with_configmap(lambda n: {"data": {UP: "SELECT 1;", "001_other.up.sql": "SELECT 1;"}}),
        "PreflightFailed",
        "001",
    ),
}


@pytest.fixture(scope="module")
def bench(
    crd: str,
    core: Api,
    custom: Api,
    cluster: devcluster.Cluster,
    project_image: str,
    pg: LocalPostgres,
    pg_host: str,
    artefacts: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bench]:
    namespace = "bad-input-operator"
    core.create_namespace({"metadata": {"name": namespace}})
    wait_for(
        "the default ServiceAccount",
        lambda: core.list_namespaced_service_account(namespace).items,
        30,
    )
    database = f"bad_{namespace.replace('-', '_')}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    server = urlsplit(
        yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    )
    api_server = f"{cluster.expose(server.port or 443)}:{server.port}"
    operator = OperatorProcess(
        namespace,
        cluster.kubeconfig,
        tmp_path_factory.mktemp("bad-input") / "operator.log",
        free_port(),
        project_image,
    )
    operator.start()
    try:
        bench = Bench(
            core, custom, namespace, NodeDatabase(pg, database, pg_host), cluster, api_server
        )
        bench.secret("db", {"DATABASE_URL": bench.database.url})
        yield bench
    finally:
        operator.stop()
        artefacts.collect(namespace)
        core.delete_namespace(namespace, propagation_policy="Background")
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def wait_reason(bench: Bench, name: str, kind: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get(bench.custom, bench.namespace, name)
        return obj if condition(obj, kind).get("reason") == reason else None

    try:
        return dict(wait_for(f"{name}: {kind} {reason}", reached, timeout=180))
    except AssertionError as error:
        seen = get(bench.custom, bench.namespace, name).get("status", {})
        raise AssertionError(f"{error}; status was {json.dumps(seen, indent=1)}") from None


@pytest.mark.parametrize("case", REPORTED.values(), ids=REPORTED.keys())
def test_operator_reports_what_is_wrong(bench: Bench, case: Reported) -> None:
    name = f"case-{len(bench.made) + 1}"
    bench.made.append(name)
    create(bench.custom, bench.namespace, name, case.setup(bench, name))
    obj = wait_reason(bench, name, case.kind, case.reason)
    message = condition(obj, case.kind)["message"]
    assert case.message in message, message
    assert condition(obj, "Ready")["status"] != "True"
    assert obj["status"].get("currentVersion") in (None, 0)


def test_nothing_reported_reached_the_database(bench: Bench) -> None:
    assert bench.made, "the cases above ran first"
    tables = bench.database.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert tables == []
    ledger = bench.database.scalar("SELECT to_regclass('migrate_safe.applied')")
    if ledger is not None:
        assert bench.database.rows("SELECT version FROM migrate_safe.applied") == []


def test_the_longest_name_migrates(bench: Bench, db: Database) -> None:
    """A name at the API server's limit (253 characters) is valid: its Jobs, labels and inline
    ConfigMap get names Kubernetes takes, and the migration runs (on a database of its own)."""
    bench.secret("long-db", {"DATABASE_URL": db.url})
    files = {UP: "CREATE TABLE long_name (id int);", "001_table.down.sql": "DROP TABLE long_name;"}
    spec = basic_spec(database={"secretRef": {"name": "long-db"}}, source={"inline": files})
    create(bench.custom, bench.namespace, LONG_NAME, spec)
    obj = wait_reason(bench, LONG_NAME, "Ready", "Migrated")
    assert obj["status"]["currentVersion"] == 1
    assert db.scalar("SELECT to_regclass('long_name')") is not None


def test_inline_source_at_the_limit_applied_with_kubectl_migrates(
    bench: Bench, db: Database
) -> None:
    """`kubectl apply` keeps a copy of the object in an annotation, and so did kopf: two copies
    of a large inline source overflowed the 256 KiB all annotations share, and kopf failed every
    patch. kopf keeps no copy of the spec now, so a source at the CRD's limit works."""
    bench.secret("limit-db", {"DATABASE_URL": db.url})
    padding = "-- " + "x" * 76 + "\n"
    files = {
        "001_big.up.sql": padding * (60 * KIB // len(padding)) + "CREATE TABLE big (id int);",
        "001_big.down.sql": "DROP TABLE big;",
        "002_big.up.sql": padding * (60 * KIB // len(padding)) + "ALTER TABLE big ADD x int;",
        "002_big.down.sql": "ALTER TABLE big DROP x;",
    }
    assert 120 * KIB < sum(len(k) + len(v) for k, v in files.items()) <= 128 * KIB
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": "at-the-limit", "namespace": bench.namespace},
        "spec": basic_spec(database={"secretRef": {"name": "limit-db"}}, source={"inline": files}),
    }
    kubectl = [
        str(bench.cluster.bin_dir / "kubectl"),
        "--kubeconfig",
        str(bench.cluster.kubeconfig),
    ]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(manifest), text=True,
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    obj = wait_reason(bench, "at-the-limit", "Ready", "Migrated")
    assert obj["status"]["currentVersion"] == 2
    assert (
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'big'") == 2
    )


def test_configmap_changed_while_the_apply_job_reads_it(bench: Bench, db: Database) -> None:
    """The apply Job runs the files as it read them when it started; the change is reported as
    drift of that version on the next pass, never half-applied."""
    bench.secret("changed-db", {"DATABASE_URL": db.url})
    files = {
        "001_slow.up.sql": "SELECT pg_sleep(8);\nCREATE TABLE first_table (id int);",
        "001_slow.down.sql": "DROP TABLE first_table;",
        "002_second.up.sql": "CREATE TABLE second_table (id int);",
        "002_second.down.sql": "DROP TABLE second_table;",
    }
    configmap(bench.core, bench.namespace, "changed", files)
    spec = basic_spec(
        database={"secretRef": {"name": "changed-db"}}, source={"configMaps": [{"name": "changed"}]}
    )
    create(bench.custom, bench.namespace, "changed", spec)
    # The harness reads every file before its first statement: once version 1 sleeps in the
    # database, the Job has read the source, and the change lands while it runs.
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%'"
    )
    wait_for("the apply Job inside version 1", lambda: db.scalar(sleeping), timeout=180)
    edited = {**files, "002_second.up.sql": "CREATE TABLE edited_table (id int);"}
    bench.core.patch_namespaced_config_map("changed", bench.namespace, {"data": edited})
    obj = wait_reason(bench, "changed", "Ready", "Migrated")
    assert obj["status"]["currentVersion"] == 2
    assert db.scalar("SELECT to_regclass('second_table')") is not None
    assert db.scalar("SELECT to_regclass('edited_table')") is None
    assert db.rows("SELECT version FROM migrate_safe.applied ORDER BY version") == [(1,), (2,)]
    # The next generation finds the file no longer matches what was applied.
    bench.custom.patch_namespaced_custom_object(
        GROUP, VERSION, bench.namespace, PLURAL, "changed", {"spec": {"targetVersion": 2}}
    )
    obj = wait_reason(bench, "changed", "Stalled", "PreflightFailed")
    assert "002_second.up.sql" in condition(obj, "Stalled")["message"]
    assert db.scalar("SELECT to_regclass('edited_table')") is None
