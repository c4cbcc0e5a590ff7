"""Postflight proves the result: orphans behind NOT VALID keys, invalid indexes, the target,
the fingerprint."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli, Database

pytestmark = pytest.mark.db


def checks_of(done_stdout: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(done_stdout)["postflight"]["checks"]}


def test_postflight_finds_orphan_rows_behind_a_not_valid_foreign_key(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "tables", "CREATE TABLE customers (id int PRIMARY KEY);"
              " CREATE TABLE orders (id int, customer_id int);"
              " INSERT INTO customers VALUES (1); INSERT INTO orders VALUES (1, 1), (2, 99),"
              " (3, NULL);", "DROP TABLE orders, customers;")  # fmt: skip
    cli.write(2, "fk", "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY"
              " (customer_id) REFERENCES customers NOT VALID;",
              "ALTER TABLE orders DROP CONSTRAINT orders_customer_fk;")  # fmt: skip
    assert cli("apply", "--no-backup").returncode == 0
    done = cli("postflight", "--json")
    assert done.returncode == 3
    fk = checks_of(done.stdout)["UnvalidatedForeignKeys"]
    assert fk["status"] == "fail"
    assert fk["evidence"][0]["orphan_rows"] == 1  # type: ignore[index]  # NULL is not an orphan
    db.execute("DELETE FROM orders WHERE customer_id = 99")
    clean = cli("postflight", "--json")
    assert clean.returncode == 0
    assert checks_of(clean.stdout)["UnvalidatedForeignKeys"]["status"] == "warn"


def test_postflight_checks_target_dirty_invalid_indexes_and_expected_fingerprint(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "u", "CREATE TABLE u (id int);", "DROP TABLE u;")
    assert cli("apply", "--no-backup", "--to", "1").returncode == 0
    behind = cli("postflight", "--json")
    assert behind.returncode == 3
    assert checks_of(behind.stdout)["LedgerAtTarget"]["status"] == "fail"
    at_one = cli("postflight", "--to", "1", "--json")
    assert at_one.returncode == 0
    fingerprint = json.loads(at_one.stdout)["fingerprint"]
    assert cli("postflight", "--to", "1", "--expected-fingerprint", fingerprint).returncode == 0
    assert cli("postflight", "--to", "1", "--expected-fingerprint", "0" * 64).returncode == 3
    db.execute(
        "CREATE INDEX t_id ON t (id);"
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 't_id'::regclass;"
    )
    broken = cli("--postflight", "--to", "1", "--json")
    assert broken.returncode == 3
    assert checks_of(broken.stdout)["InvalidIndexes"]["status"] == "fail"
    recorded = db.rows(
        "SELECT outcome, fingerprint IS NOT NULL FROM migrate_safe.history"
        " WHERE direction = 'postflight' ORDER BY id"
    )
    assert recorded == [("failed", True), ("passed", True), ("passed", True), ("failed", True),
                        ("failed", True)]  # fmt: skip


def test_run_is_the_whole_pipeline_with_one_report(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    done = cli("run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["preflight"]["passed"] and report["postflight"]["passed"]
    assert report["backup"]["sha256"] and report["applied"][0]["version"] == 1
    assert report["fingerprint"] == db.scalar(
        "SELECT fingerprint FROM migrate_safe.history WHERE direction = 'postflight'"
    )
