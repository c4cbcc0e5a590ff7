"""Dirty state and explicit recovery: a killed no-transaction migration, force, repair,
baseline and adoption of a golang-migrate database."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import Cli, Database, wait_for

pytestmark = pytest.mark.db

# Long enough to be killed in the middle; short enough that a PostgreSQL 13 server, which has
# no client_connection_check_interval, ends the dead run's backend (when the sleep ends) within
# wait_for's 20 s. From 14 it notices the dead client within a second.
SLOW_NO_TX = """-- migrate-safe:no-transaction
CREATE TABLE first_half (id int);
SELECT pg_sleep(10);
CREATE TABLE second_half (id int);
"""


def test_killed_no_transaction_migration_leaves_dirty_row_that_blocks_until_force(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "base", "CREATE TABLE base (id int);", "DROP TABLE base;")
    cli.write(2, "slow", SLOW_NO_TX, "DROP TABLE IF EXISTS second_half, first_half;")
    running = cli.start("apply")
    wait_for(
        lambda: (
            db.scalar(
                "SELECT statements_done FROM migrate_safe.applied"
                " WHERE version = 2 AND state = 'dirty'"
            )
            == 1
        )
    )
    running.send_signal(signal.SIGKILL)
    running.wait(10)
    # The server notices the dead client and ends its backend, releasing the advisory lock.
    wait_for(
        lambda: (
            db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'migrate-safe/%'"
            )
            == 0
        )
    )
    assert db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY 1") == [
        (1, "applied"),
        (2, "dirty"),
    ]
    blocked = cli("apply")
    assert blocked.returncode == 2
    assert "dirty at version 2" in blocked.stderr
    assert json.loads(cli("status", "--json").stdout)["dirty"] is True

    # The operator checked by hand: first_half exists, second_half does not. Undo and force.
    db.execute("DROP TABLE first_half")
    forced = cli("force", "--version", "1")
    assert forced.returncode == 0, forced.stderr
    outcomes = db.rows(
        "SELECT version, outcome FROM migrate_safe.history"
        " WHERE direction = 'force' AND version IS NOT NULL"
    )
    assert outcomes == [(2, "removed")]
    quick = SLOW_NO_TX.replace("pg_sleep(10)", "pg_sleep(0)")
    cli.write(2, "slow", quick, "DROP TABLE second_half, first_half;")
    assert cli("apply").returncode == 0
    assert db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY 1") == [
        (1, "applied"),
        (2, "applied"),
    ]


def test_force_marks_a_dirty_version_applied_when_it_really_finished(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert cli("apply").returncode == 0
    db.execute("UPDATE migrate_safe.applied SET state = 'dirty'")
    assert cli("force", "--version", "1").returncode == 0
    assert db.scalar("SELECT state FROM migrate_safe.applied") == "applied"


def test_repair_drops_dirty_rows_and_realigns_edited_checksums(cli: Cli, db: Database) -> None:
    path = cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "u", "CREATE TABLE u (id int);", "DROP TABLE u;")
    assert cli("apply").returncode == 0
    db.execute("UPDATE migrate_safe.applied SET state = 'dirty' WHERE version = 2")
    path.write_text("CREATE TABLE t (id int);  -- reformatted\n")
    done = cli("repair", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["removed_dirty"], report["realigned"]) == ([2], [1])
    status = json.loads(cli("status", "--json").stdout)
    assert status["drift"]["checksum_mismatches"] == []
    assert status["pending"] == [2]


def test_history_is_append_only(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert cli("apply").returncode == 0
    with pytest.raises(Exception, match="append-only"):
        db.execute("DELETE FROM migrate_safe.history")


def test_baseline_adopts_an_existing_database(cli: Cli, db: Database) -> None:
    db.execute("CREATE TABLE a (id int); CREATE TABLE b (id int);")
    for version, name in ((1, "a"), (2, "b"), (3, "c")):
        cli.write(version, name, f"CREATE TABLE {name} (id int);", f"DROP TABLE {name};")
    done = cli("baseline", "--version", "2")
    assert done.returncode == 0, done.stderr
    assert cli("apply").returncode == 0
    rows = db.rows("SELECT version, down_sql FROM migrate_safe.applied ORDER BY 1")
    assert rows == [(1, "DROP TABLE a;"), (2, "DROP TABLE b;"), (3, "DROP TABLE c;")]
    assert cli("baseline", "--version", "1").returncode == 5  # only an empty ledger is adopted


def test_baseline_imports_golang_migrate_version(cli: Cli, db: Database) -> None:
    db.execute(
        "CREATE TABLE a (id int);"
        "CREATE TABLE schema_migrations"
        " (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);"
        "INSERT INTO schema_migrations VALUES (1, false);"
    )
    cli.write(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;")
    cli.write(2, "b", "CREATE TABLE b (id int);", "DROP TABLE b;")
    done = cli("baseline", "--from-golang-migrate")
    assert done.returncode == 0, done.stderr
    assert json.loads(cli("status", "--json").stdout)["pending"] == [2]
