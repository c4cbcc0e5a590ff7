"""apply --dry-run: real execution inside one transaction, a lock report, nothing changed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli, Database

pytestmark = pytest.mark.db

# Everything a user could notice in the catalog, in a stable order.
CATALOG = """
SELECT n.nspname, c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2, 4
"""


def test_rehearsal_reports_locks_and_errors_and_changes_nothing(cli: Cli, db: Database) -> None:
    db.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
        "INSERT INTO accounts VALUES (1, 10);"
    )
    cli.write(1, "add_note", "ALTER TABLE accounts ADD COLUMN note text DEFAULT 'x';", "SELECT 1;")
    cli.write(2, "index", "CREATE INDEX accounts_balance_idx ON accounts (balance);", "SELECT 1;")
    cli.write(3, "update", "UPDATE accounts SET balance = balance + 1;", "SELECT 1;")
    before = db.rows(CATALOG)
    done = cli("apply", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    locks = {
        entry["version"]: {
            (lock["relation"], lock["mode"]) for lock in entry["statements"][0]["locks"]
        }
        for entry in report["rehearsal"]
    }
    assert ("public.accounts", "AccessExclusiveLock") in locks[1]
    assert ("public.accounts", "ShareLock") in locks[2]
    assert ("public.accounts", "RowExclusiveLock") in locks[3]
    assert db.rows(CATALOG) == before
    assert db.scalar("SELECT balance FROM accounts") == 10
    assert db.scalar("SELECT to_regnamespace('migrate_safe')") is None


def test_rehearsal_shows_the_postgres_error_and_exits_2(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "bad", "INSERT INTO t VALUES ('not a number');", "SELECT 1;")
    before = db.rows(CATALOG)
    done = cli("--dry-run")
    assert done.returncode == 2
    assert "002_bad.up.sql:1" in done.stderr
    assert "invalid input syntax for type integer" in done.stderr
    assert "22P02" in done.stderr
    assert db.rows(CATALOG) == before
