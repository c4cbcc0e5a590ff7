"""Lint that knows the database: against real PostgreSQL, findings that only bite on tables
with rows are judged by the real table, down files never block an apply, a rollback lints its
down files, and every refusal names the way out."""

from __future__ import annotations

import json

import psycopg
import pytest

from migrate_safe.catalog import table_facts
from migrate_safe.lint import RelationName
from tests.conftest import Cli, Database

pytestmark = pytest.mark.db

CREATE_ORDERS = "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz);"
INDEX_ORDERS = "CREATE INDEX orders_created_at_idx ON orders (created_at);"


def findings_of(report: dict[str, object]) -> dict[str, dict[str, object]]:
    lint = report["lint"]
    assert isinstance(lint, dict)
    return {f["rule"]: f for f in lint["findings"]}


def orders_with_rows(db: Database, rows: int) -> None:
    db.execute(
        f"{CREATE_ORDERS} INSERT INTO orders SELECT g, now() FROM generate_series(1, {rows}) AS g;"
    )


def test_a_real_world_directory_applies_on_an_empty_database(cli: Cli, db: Database) -> None:
    cli.write(1, "init", CREATE_ORDERS, "DROP TABLE orders;")
    cli.write(2, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    # A down file with an error-level finding: apply never runs it, so it must not block.
    bad_down = (
        "CREATE TABLE nothing_here (id int);\nALTER TABLE orders ADD COLUMN note text NOT NULL;"
    )
    cli.write(3, "cleanup", "DROP TABLE IF EXISTS nothing_here;", bad_down)
    done = cli("apply", "--no-backup", "--json")
    assert done.returncode == 0, done.stderr
    assert db.rows("SELECT version FROM migrate_safe.applied ORDER BY 1") == [(1,), (2,), (3,)]
    assert db.scalar("SELECT to_regclass('orders_created_at_idx') IS NOT NULL") is True
    checks = {c["name"]: c for c in json.loads(done.stdout)["preflight"]["checks"]}
    assert checks["Lint"]["status"] == "pass"


def test_plan_says_why_each_finding_is_harmless_here(cli: Cli) -> None:
    cli.write(1, "init", CREATE_ORDERS, "SELECT 1;")
    cli.write(2, "index", INDEX_ORDERS, "SELECT 1;")
    cli.write(3, "cleanup", "DROP TABLE IF EXISTS nothing_here;", "SELECT 1;")
    found = findings_of(json.loads(cli("plan", "--json").stdout))
    assert found["MS101"]["severity"] == "info"
    assert str(found["MS101"]["message"]).endswith(
        "table orders is created by 001_init.up.sql in this run: it is empty and unused"
    )
    assert found["MS401"]["severity"] == "info"
    assert str(found["MS401"]["message"]).endswith(
        "nothing_here does not exist, so IF EXISTS makes this a no-op"
    )


def test_index_on_a_big_existing_table_is_refused_naming_the_way_out(
    cli: Cli, db: Database
) -> None:
    orders_with_rows(db, 100_000)
    cli.write(1, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    refused = cli("apply", "--no-backup")
    assert refused.returncode == 1
    assert "Lint" in refused.stderr
    assert "public.orders holds" in refused.stderr
    assert "over [lint] small_table_rows = 10000" in refused.stderr
    assert "`-- migrate-safe:allow=MS101`" in refused.stderr
    assert '`[lint.severity] MS101 = "warning"`' in refused.stderr
    assert "--force" in refused.stderr
    assert db.scalar("SELECT to_regclass('orders_created_at_idx')") is None
    # The way out it named: a higher limit in the settings file.
    (cli.workdir / "migrate-safe.toml").write_text(
        "[lint]\nsmall_table_rows = 1000000\nsmall_table_bytes = 1073741824\n"
    )
    assert cli("apply", "--no-backup").returncode == 0
    assert db.scalar("SELECT to_regclass('orders_created_at_idx') IS NOT NULL") is True


def test_a_low_limit_in_the_settings_refuses_a_small_table(cli: Cli, db: Database) -> None:
    orders_with_rows(db, 50)
    cli.write(1, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    assert cli("preflight").returncode == 0
    (cli.workdir / "migrate-safe.toml").write_text("[lint]\nsmall_table_rows = 10\n")
    refused = cli("preflight")
    assert refused.returncode == 1
    assert "over [lint] small_table_rows = 10" in refused.stderr


def test_index_on_an_existing_empty_table_is_info(cli: Cli, db: Database) -> None:
    orders_with_rows(db, 0)
    cli.write(1, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    found = findings_of(json.loads(cli("plan", "--json").stdout))
    assert found["MS101"]["severity"] == "info"
    assert str(found["MS101"]["message"]).endswith("public.orders is empty (no data pages)")
    assert cli("apply", "--no-backup").returncode == 0


def test_a_table_another_session_locks_is_not_measured_and_the_finding_stays(
    cli: Cli, db: Database
) -> None:
    orders_with_rows(db, 0)
    cli.write(1, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    with db.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        # Measuring would queue behind the lock; plan must not wait for the holder.
        plan = cli("plan", "--json", timeout=30)
        holder.execute("ROLLBACK")
    found = findings_of(json.loads(plan.stdout))
    assert found["MS101"]["severity"] == "error"
    assert str(found["MS101"]["message"]).endswith(
        "size of public.orders unknown: another session holds it locked exclusively"
    )


def test_rollback_lints_its_down_files_and_refuses_an_error_on_a_big_table(
    cli: Cli, db: Database
) -> None:
    orders_with_rows(db, 100_000)
    db.execute(INDEX_ORDERS)
    drop = (
        "-- migrate-safe:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS orders_created_at_idx;"
    )
    cli.write(1, "drop_index", drop, INDEX_ORDERS)
    assert cli("apply", "--no-backup").returncode == 0
    refused = cli("rollback", "--json")
    assert refused.returncode == 1
    report = json.loads(refused.stdout)
    assert "rollback refused, nothing was rolled back" in report["error"]["message"]
    assert '`[lint.severity] MS101 = "warning"`' in report["error"]["message"]
    # The down that runs is the ledger's copy from apply time: editing the file cannot help.
    assert "migrate-safe:allow" not in report["error"]["message"]
    assert "`rollback --force`" in report["error"]["message"]
    assert db.rows("SELECT version FROM migrate_safe.applied") == [(1,)]
    (cli.workdir / "custom.toml").write_text('[lint.severity]\nMS101 = "warning"\n')
    assert cli("rollback", "--config", "custom.toml").returncode == 0
    assert db.rows("SELECT version FROM migrate_safe.applied") == []


def test_rollback_force_rolls_back_past_lint_errors_and_says_so(cli: Cli, db: Database) -> None:
    orders_with_rows(db, 100_000)
    db.execute(INDEX_ORDERS)
    drop = (
        "-- migrate-safe:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS orders_created_at_idx;"
    )
    cli.write(1, "drop_index", drop, INDEX_ORDERS)
    assert cli("apply", "--no-backup").returncode == 0
    forced = cli("rollback", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["lint"]["overridden_by_force"] is True
    assert db.rows("SELECT version FROM migrate_safe.applied") == []


def test_rollback_of_downs_that_drop_what_they_created_passes(cli: Cli, db: Database) -> None:
    cli.write(1, "init", CREATE_ORDERS, "DROP TABLE orders;")
    cli.write(2, "index", INDEX_ORDERS, "DROP INDEX orders_created_at_idx;")
    assert cli("apply", "--no-backup").returncode == 0
    done = cli("rollback", "--to", "0", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["lint"]["summary"]["error"] == 0
    assert db.scalar("SELECT to_regclass('orders')") is None


def test_catalog_facts_resolve_names_through_the_search_path(db: Database) -> None:
    db.execute(
        "CREATE SCHEMA app; CREATE TABLE app.events (id int); CREATE TABLE public.events (id int);"
        "INSERT INTO public.events SELECT generate_series(1, 1000);"
        "CREATE TABLE parts (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (5000);"
        "INSERT INTO parts SELECT generate_series(1, 4000); CREATE INDEX parts_id ON parts (id);"
    )
    names = {
        "bare": RelationName(None, "events"),
        "qualified": RelationName("app", "events"),
        "absent": RelationName("app", "nothing"),
        "partitioned": RelationName(None, "parts"),
        "index": RelationName(None, "parts_id"),
    }
    with psycopg.connect(db.url, autocommit=True) as conn:
        facts = table_facts(conn, names.values())
    bare, qualified = facts.get(names["bare"]), facts.get(names["qualified"])
    assert bare is not None and bare.relation == "public.events" and bare.size is not None
    assert bare.size.estimated_rows >= 1000
    assert qualified is not None and qualified.size is not None and qualified.size.empty
    assert facts.knows(names["absent"]) and facts.get(names["absent"]) is None
    partitioned = facts.get(names["partitioned"])
    assert partitioned is not None and partitioned.kind == "partitioned table"
    assert partitioned.size is not None and partitioned.size.estimated_rows >= 4000
    index = facts.get(names["index"])
    assert index is not None and (index.kind, index.table) == ("partitioned index", "public.parts")
