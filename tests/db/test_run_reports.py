"""Reports tell the state after the run — on success, failure and signals — and every exit path
writes its report, its run_finished event and its termination message."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from migrate_safe.report import digest
from migrate_safe.results import LedgerView, PhaseResult
from tests.conftest import Cli, Database, wait_for

pytestmark = pytest.mark.db


def run_with_termination_log(
    cli: Cli, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], PhaseResult]:
    """Run the CLI as a Job pod does; the termination message read as the operator reads it."""
    termination = tmp_path / "termination-log"
    command = [*cli.command(*args)[:-2], "--termination-log", str(termination)]
    done = subprocess.run(command, env=cli.env(), cwd=cli.workdir, capture_output=True, text=True)
    return done, PhaseResult.from_json(json.loads(termination.read_text()))


def last_report(cli: Cli) -> dict[str, Any]:
    path = max(cli.log_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def events(cli: Cli) -> list[dict[str, Any]]:
    lines = (cli.log_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_failed_apply_reports_the_ledger_as_it_is_after_the_run(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    for version in (1, 2, 4, 5):
        cli.write(version, f"t{version}", f"CREATE TABLE t{version} (id int);", "SELECT 1;")
    cli.write(3, "broken", "ALTER TABLE nowhere ADD COLUMN x int;", "SELECT 1;")
    done, summary = run_with_termination_log(cli, tmp_path, "apply", "--no-backup")
    assert done.returncode == 2
    report = last_report(cli)
    assert (report["current_version"], report["pending"], report["dirty"]) == (2, [3, 4, 5], False)
    assert [entry["version"] for entry in report["applied"]] == [1, 2]
    assert summary.ledger == LedgerView(2, 5, 3, (3, 4, 5))
    assert summary.applied == (1, 2)
    finished = events(cli)[-1]
    assert (finished["event"], finished["current_version"]) == ("run_finished", 2)


def test_a_failed_no_transaction_migration_reports_dirty(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    body = (
        "-- migrate-safe:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nSELECT 1/0;\n"
    )
    cli.write(2, "half", body, "DROP INDEX CONCURRENTLY t_id;")
    done, summary = run_with_termination_log(cli, tmp_path, "apply", "--no-backup")
    assert done.returncode == 2
    assert db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY 1") == [
        (1, "applied"),
        (2, "dirty"),
    ]
    report = last_report(cli)
    assert (report["dirty"], report["dirty_versions"], report["current_version"]) == (True, [2], 2)
    assert summary.ledger is not None and summary.ledger.dirty_versions == (2,)
    assert summary.ledger.current_version == 2


SLOW = "CREATE TABLE half_done (id int);\nSELECT pg_sleep(60);\n"


def running_sleep(db: Database) -> bool:
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'migrate-safe/%'"
        " AND query LIKE '%pg_sleep%' AND state = 'active'"
    )
    return db.scalar(query) == 1


@pytest.mark.parametrize(
    ("signum", "code", "no_transaction"),
    [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
)
def test_a_signal_mid_migration_exits_128_plus_n_with_a_report(
    cli: Cli, db: Database, signum: int, code: int, no_transaction: bool
) -> None:
    directive = "-- migrate-safe:no-transaction\n" if no_transaction else ""
    cli.write(1, "slow", directive + SLOW, "DROP TABLE IF EXISTS half_done;")
    running = cli.start("apply", "--no-backup")
    wait_for(lambda: running_sleep(db))
    running.send_signal(signum)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == code, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    report = last_report(cli)
    assert (report["outcome"], report["exit_code"]) == ("interrupted", code)
    assert events(cli)[-1]["event"] == "run_finished"
    still_running = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'migrate-%'"
    assert db.scalar(still_running) == 0
    history = db.rows("SELECT version, outcome FROM migrate_safe.history WHERE version = 1")
    assert history[-1] == (1, "interrupted")
    if no_transaction:
        assert report["dirty_versions"] == [1]
        assert "version 1 is dirty" in stderr
        assert db.scalar("SELECT to_regclass('half_done') IS NOT NULL") is True
    else:
        assert (report["dirty"], report["current_version"]) == (False, None)
        assert "the migration in progress was rolled back" in stderr
        assert db.scalar("SELECT to_regclass('half_done') IS NULL") is True


def test_an_unwritable_log_directory_is_a_config_error_before_anything_runs(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.log_dir.mkdir()
    (cli.log_dir / "events.jsonl").mkdir()  # nothing can be appended to it
    done, summary = run_with_termination_log(cli, tmp_path, "apply", "--no-backup")
    assert done.returncode == 5
    assert f"--log-dir {cli.log_dir}: cannot write" in done.stderr
    assert "Traceback" not in done.stderr
    assert (summary.exit_code, summary.outcome) == (5, "failed")
    assert db.scalar("SELECT to_regclass('t') IS NULL") is True


def test_a_refused_apply_does_not_create_the_ledger(cli: Cli, db: Database) -> None:
    db.execute("CREATE TABLE accounts (id int)")
    cli.write(1, "note", "ALTER TABLE accounts ADD COLUMN note text;", "SELECT 1;")
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_until, args=(db, "accounts", ready, release))
    holder.start()
    ready.wait(10)
    wait_for(lambda: long_reader_age(db) > 1.5)
    done = cli("apply", "--no-backup", "--long-transaction-seconds", "1")
    release.set()
    holder.join()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "LongTransactionOnTouchedTable" in done.stderr
    assert db.scalar("SELECT to_regnamespace('migrate_safe') IS NULL") is True


def hold_until(db: Database, table: str, ready: threading.Event, release: threading.Event) -> None:
    with db.connect(application_name="long-reader") as conn, conn.transaction():
        conn.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        ready.set()
        release.wait(60)


def long_reader_age(db: Database) -> float:
    age = db.scalar(
        "SELECT extract(epoch FROM now() - xact_start) FROM pg_stat_activity"
        " WHERE application_name = 'long-reader'"
    )
    return float(str(age)) if age is not None else 0.0


def test_a_rollback_that_stops_partway_leaves_no_false_drift(cli: Cli, db: Database) -> None:
    cli.write(1, "a", "CREATE TABLE a (id int);", "DROP TABLE a;")
    cli.write(2, "b", "CREATE TABLE b (id int);", "DROP TABLE nothing_called_this;")
    cli.write(3, "c", "CREATE TABLE c (id int);", "DROP TABLE c;")
    assert cli("apply", "--no-backup").returncode == 0
    stopped = cli("rollback", "--to", "0")
    assert stopped.returncode == 4
    assert last_report(cli)["current_version"] == 2
    preflight = cli("preflight", "--json")
    checks = {c["name"]: c for c in json.loads(preflight.stdout)["preflight"]["checks"]}
    assert checks["SchemaDrift"]["status"] == "pass", checks["SchemaDrift"]


@pytest.mark.parametrize(
    ("up", "args"),
    [
        ("CREATE TABLE t (id int);", ("apply",)),
        ("CREATE TABLE t (id int);", ("apply", "--dry-run")),
        ("CREATE TABLE t (id int);", ("preflight",)),
        ("CREATE TABLE t (id int REFERENCES nowhere);", ("apply", "--no-backup")),
    ],
)
def test_the_termination_message_says_what_the_json_report_says(
    cli: Cli, db: Database, tmp_path: Path, up: str, args: tuple[str, ...]
) -> None:
    # The harness digests its typed report once; read back from its JSON file, the report
    # digests to the same result: the two forms never tell the operator different things.
    cli.write(1, "t", up, "DROP TABLE t;")
    _, result = run_with_termination_log(cli, tmp_path, *args)
    assert not result.truncated
    assert digest(last_report(cli)) == result
