"""The engine owns the transaction: a file's own BEGIN … COMMIT wrapper is dropped, any other
transaction control is refused before anything runs, in every path (apply with or without
preflight, --force, dry-run, rollback, verify), and a rehearsal proves it changed nothing."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import Cli, Database
from tests.db.test_apply import hold_lock
from tests.db.test_rollback import tables

pytestmark = pytest.mark.db

WRAPPED = "BEGIN;\nCREATE TABLE t1(id int);\nCOMMIT;\n"


def ledger_exists(db: Database) -> bool:
    return db.scalar("SELECT to_regnamespace('migrate_safe') IS NOT NULL") is True


def test_dry_run_of_a_wrapped_file_commits_nothing(cli: Cli, db: Database) -> None:
    (cli.migrations / "001_a.up.sql").write_text(WRAPPED)
    (cli.migrations / "002_b.up.sql").write_text("CREATE TABLE t2(id int);\n")
    done = cli("apply", "--dry-run", "--allow-missing-down")
    assert done.returncode == 0, done.stderr
    assert tables(db) == []
    assert not ledger_exists(db)
    assert "001_a.up.sql: its BEGIN (line 1) … COMMIT (line 3) wrapper is dropped" in done.stderr
    assert "checked: the schema fingerprint and the ledger are as before" in done.stdout


def test_a_wrapped_file_is_an_ordinary_transactional_migration(cli: Cli, db: Database) -> None:
    cli.write(1, "a", WRAPPED, "BEGIN;\nDROP TABLE t1;\nCOMMIT;\n")
    cli.write(2, "b", "CREATE TABLE t2(id int);", "DROP TABLE t2;")
    applied = cli("apply", "--json")
    assert applied.returncode == 0, applied.stderr
    assert tables(db) == ["t1", "t2"]
    assert json.loads(applied.stdout)["notes"][0].startswith(str(cli.migrations / "001_a.up.sql"))
    rolled_back = cli("rollback", "--to", "0")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert tables(db) == []
    verified = cli("verify")
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(
    ("flags", "body", "line", "keyword"),
    [
        (
            ["--skip-preflight"],
            "CREATE TABLE t1(id int);\nROLLBACK;\nCREATE TABLE t3(id int);",
            2,
            "ROLLBACK",
        ),
        (["--force"], "CREATE TABLE t1(id int);\nCOMMIT;\nCREATE TABLE t3(id int);", 2, "COMMIT"),
        (["--dry-run"], "CREATE TABLE t1(id int);\nBEGIN;\nCREATE TABLE t3(id int);", 2, "BEGIN"),
        (
            [],
            "CREATE TABLE t1(id int);\nSAVEPOINT s;\nCREATE TABLE t3(id int);\nROLLBACK TO s;",
            2,
            "SAVEPOINT",
        ),
        ([], "CREATE TABLE t1(id int);\nPREPARE TRANSACTION 'x';", 2, "PREPARE TRANSACTION"),
        ([], "CREATE TABLE t1(id int);\nABORT;", 2, "ROLLBACK"),
        ([], "BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE t1(id int);\nCOMMIT;", 1, "BEGIN"),
        ([], "CREATE TABLE t1(id int);\nEND;", 2, "COMMIT"),
    ],
)
def test_transaction_control_is_refused_before_the_first_statement_in_every_path(
    cli: Cli, db: Database, flags: list[str], body: str, line: int, keyword: str
) -> None:
    cli.write(1, "first", "CREATE TABLE before_it(id int);", "DROP TABLE before_it;")
    path = cli.write(2, "control", body, "SELECT 1;")
    done = cli("apply", *flags)
    assert done.returncode == 5, done.stderr
    assert f"{path}:{line}: {keyword}" in done.stderr
    assert "nothing was run" in done.stderr
    assert tables(db) == []  # not even the good migration 1 ran
    assert not ledger_exists(db)


def test_a_no_transaction_file_may_not_hold_transaction_control(cli: Cli, db: Database) -> None:
    body = "-- migrate-safe:no-transaction\nBEGIN;\nCREATE TABLE t1(id int);\nCOMMIT;\n"
    path = cli.write(1, "no_tx", body, "DROP TABLE t1;")
    done = cli("apply", "--skip-preflight")
    assert done.returncode == 5
    assert f"{path}:2: BEGIN in a no-transaction migration" in done.stderr
    assert tables(db) == []


def test_a_down_file_with_transaction_control_is_refused_before_the_rollback(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "a", "CREATE TABLE t1(id int);", "DROP TABLE t1;")
    down = cli.migrations / "002_b.down.sql"
    cli.write(2, "b", "CREATE TABLE t2(id int);", "DROP TABLE t2;\nCOMMIT;\nDROP TABLE t1;")
    assert cli("apply").returncode == 0
    done = cli("rollback", "--to", "0")
    assert done.returncode == 5, done.stderr
    assert "ledger:2_b.down.sql:2: COMMIT" in done.stderr, str(down)
    assert tables(db) == ["t1", "t2"]


def test_a_wrapped_file_still_runs_under_the_lock_timeout(cli: Cli, db: Database) -> None:
    db.execute("CREATE TABLE accounts (id int)")
    cli.write(1, "note", "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;", "SELECT 1;")
    ready, finished = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_lock, args=(db, "accounts", ready, finished.is_set))
    holder.start()
    assert ready.wait(30)
    started = time.monotonic()
    try:
        done = cli(
            "apply",
            "--no-backup",
            "--lock-timeout",
            "200ms",
            "--lock-timeout-max",
            "200ms",
            "--lock-retries",
            "0",
            "--quiet-wait",
            "0",
        )
        waited = time.monotonic() - started
    finally:
        finished.set()
        holder.join()
    assert done.returncode == 2
    assert "55P03" in done.stderr
    assert waited < 6, f"the ALTER queued {waited:.1f}s behind the lock"


def test_a_syntax_error_is_refused_before_anything_runs_at_its_line(cli: Cli, db: Database) -> None:
    cli.write(1, "ok", "CREATE TABLE t1(id int);", "DROP TABLE t1;")
    path = cli.write(
        2, "typo", "CREATE TABLE t2(id int);\n\nALTER TABLE t2 ADD COLUMN;", "SELECT 1;"
    )
    done = cli("apply")
    assert done.returncode == 5
    assert f"{path}:3:" in done.stderr and "syntax error" in done.stderr
    assert tables(db) == []


def test_a_runtime_error_points_at_the_line_postgres_names(cli: Cli, db: Database) -> None:
    body = "CREATE TABLE t1(\n  id int,\n  made timestamptz\n);\nSELECT id,\n  nope\nFROM t1;"
    path = cli.write(1, "bad_column", body, "SELECT 1;")
    done = cli("apply", "--no-backup")
    assert done.returncode == 2
    assert f"{path}:6:" in done.stderr and "42703" in done.stderr


def test_the_rehearsal_proves_itself_and_names_what_persisted(cli: Cli, db: Database) -> None:
    # dblink runs SQL on a second connection, which commits on its own: the one way left for a
    # rehearsal's work to outlive its rollback. The rehearsal must notice and say so.
    db.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    leak = f"SELECT dblink_exec('{db.url}', 'CREATE TABLE leaked (id int)');"
    cli.write(1, "leak", leak, "DROP TABLE leaked;")
    done = cli("apply", "--dry-run")
    assert done.returncode == 2, done.stderr
    assert "did NOT leave the database as it was" in done.stderr
    assert "leaked" in done.stderr
    assert "rolled back" not in done.stdout
    assert db.server.password not in done.stderr + done.stdout


def test_verify_names_files_with_transaction_control_and_exits_5(cli: Cli) -> None:
    cli.write(1, "a", "CREATE TABLE t1(id int);", "DROP TABLE t1;")
    down = cli.migrations / "002_b.down.sql"
    cli.write(2, "b", "CREATE TABLE t2(id int);", "DROP TABLE t2;\nROLLBACK;")
    done = cli("verify")
    assert done.returncode == 5
    assert f"{down}:2: ROLLBACK" in done.stderr
