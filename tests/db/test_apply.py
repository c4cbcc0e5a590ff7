"""apply against a real PostgreSQL: ledger rows, history, retries, concurrency, tampering."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable

import pytest

from tests.conftest import EXAMPLES, Cli, Database, wait_for

pytestmark = pytest.mark.db


def status(cli: Cli) -> dict[str, object]:
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def copy_examples(cli: Cli) -> None:
    for path in EXAMPLES.glob("*.sql"):
        shutil.copy(path, cli.migrations)


def test_apply_all_examples_records_every_version_with_its_down_sql(cli: Cli, db: Database) -> None:
    copy_examples(cli)
    done = cli("apply")
    assert done.returncode == 0, done.stderr
    assert "✓ 3_index_orders_customer" in done.stderr
    rows = db.rows(
        "SELECT version, state, down_sql IS NOT NULL, length(checksum)"
        " FROM migrate_safe.applied ORDER BY version"
    )
    assert rows == [(v, "applied", True, 64) for v in range(1, 9)]
    assert db.scalar("SELECT count(*) FROM orders") == 6
    assert db.scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_id_idx'::regclass"
    )
    now = status(cli)
    assert (now["current_version"], now["pending"], now["dirty"]) == (8, [], False)


def test_apply_to_a_version_then_the_rest_then_nothing(cli: Cli, db: Database) -> None:
    copy_examples(cli)
    assert cli("apply", "--to", "4").returncode == 0
    assert status(cli)["current_version"] == 4
    assert status(cli)["pending"] == [5, 6, 7, 8]
    assert cli("apply").returncode == 0
    again = cli("apply")
    assert again.returncode == 0
    assert "0 pending" in again.stderr
    succeeded = db.rows(
        "SELECT version, count(*) FROM migrate_safe.history"
        " WHERE direction = 'up' AND outcome = 'succeeded' GROUP BY version ORDER BY version"
    )
    assert succeeded == [(v, 1) for v in range(1, 9)]


def test_seed_style_apply_flag_is_an_alias(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert cli("--apply").returncode == 0
    assert db.scalar("SELECT count(*) FROM migrate_safe.applied") == 1


def test_failing_migration_rolls_back_completely_and_history_keeps_the_error(
    cli: Cli, db: Database
) -> None:
    cli.write(1, "ok", "CREATE TABLE a (id int);", "DROP TABLE a;")
    cli.write(
        2,
        "broken",
        "CREATE TABLE b (id int);\nALTER TABLE missing ADD COLUMN x int;",
        "DROP TABLE b;",
    )
    done = cli("apply")
    assert done.returncode == 2
    assert "002_broken.up.sql:2" in done.stderr
    assert 'relation "missing" does not exist' in done.stderr
    assert db.scalar("SELECT to_regclass('b')") is None  # statement 1 of 2 rolled back too
    assert db.rows("SELECT version FROM migrate_safe.applied") == [(1,)]
    failures = db.rows(
        "SELECT version, outcome, sqlstate, error FROM migrate_safe.history"
        " WHERE outcome = 'failed' AND direction = 'up'"
    )
    assert failures == [(2, "failed", "42P01", 'relation "missing" does not exist')]
    report = json.loads(next(cli.log_dir.glob("apply-*.json")).read_text())
    assert report["exit_code"] == 2
    assert report["applied"][0]["version"] == 1
    assert report["error"]["details"]["sqlstate"] == "42P01"


def hold_lock(db: Database, table: str, ready: threading.Event, until: Callable[[], bool]) -> None:
    """Hold `table` until `until()` holds: let go on what the server shows of the apply,
    never after a fixed time that a slow machine could outlast."""
    with db.connect(application_name="long-reader") as conn, conn.transaction():
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        ready.set()
        wait_for(until, timeout=120)


def lock_waits(db: Database, count: int) -> Callable[[], bool]:
    """True once the apply's statements have queued for a lock `count` separate times."""
    seen: set[object] = set()

    def waited() -> bool:
        seen.update(
            row[0]
            for row in db.rows(
                "SELECT query_start FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name LIKE 'migrate-safe/%'"
            )
        )
        return len(seen) >= count

    return waited


def quiet_waiting(db: Database) -> Callable[[], bool]:
    """True once the apply, having found the long holder, rolled back to wait outside a
    transaction."""
    return lambda: bool(
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'ROLLBACK'"
            " AND application_name LIKE 'migrate-safe/%'"
        )
    )


def test_lock_timeout_is_retried_with_escalation_until_the_lock_is_free(
    cli: Cli, db: Database
) -> None:
    db.execute("CREATE TABLE accounts (id int)")
    cli.write(
        1,
        "add_note",
        "ALTER TABLE accounts ADD COLUMN note text;",
        "ALTER TABLE accounts DROP COLUMN note;",
    )
    ready = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(db, "accounts", ready, lock_waits(db, 3)))
    holder.start()
    ready.wait(10)
    done = cli(
        "apply", "--no-backup", "--lock-timeout", "100ms", "--lock-retries", "20",
        "--retry-backoff", "100ms",
        "--retry-backoff-max", "200ms", "--quiet-wait", "0",
    )  # fmt: skip
    holder.join()
    assert done.returncode == 0, done.stderr
    assert "lock not available" in done.stderr
    retried = db.rows(
        "SELECT attempt, sqlstate FROM migrate_safe.history WHERE outcome = 'retried' ORDER BY id"
    )
    assert len(retried) >= 2
    assert {r[1] for r in retried} == {"55P03"}
    assert (
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == 1
    )
    events = [json.loads(line) for line in (cli.log_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "lock_timeout_retry" for e in events) == len(retried)


def test_lock_timeout_retries_are_bounded_then_exit_2(cli: Cli, db: Database) -> None:
    db.execute("CREATE TABLE accounts (id int)")
    cli.write(1, "add_note", "ALTER TABLE accounts ADD COLUMN note text;", "SELECT 1;")
    ready, finished = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_lock, args=(db, "accounts", ready, finished.is_set))
    holder.start()
    ready.wait(10)
    try:
        done = cli(
            "apply", "--no-backup", "--lock-timeout", "100ms", "--lock-timeout-max", "200ms",
            "--lock-retries", "2",
            "--retry-backoff", "50ms", "--quiet-wait", "0",
        )  # fmt: skip
    finally:
        finished.set()
        holder.join()
    assert done.returncode == 2
    assert "failed after 3 attempts" in done.stderr
    assert "55P03" in done.stderr
    outcomes = db.rows(
        "SELECT outcome FROM migrate_safe.history WHERE direction = 'up' ORDER BY id"
    )
    assert outcomes == [("retried",), ("retried",), ("failed",)]
    # The run itself records the schema it left, so the next drift check knows it is ours.
    run = db.rows(
        "SELECT outcome, fingerprint IS NOT NULL FROM migrate_safe.history"
        " WHERE direction = 'apply'"
    )
    assert run == [("failed", True)]
    assert db.scalar("SELECT count(*) FROM migrate_safe.applied") == 0


def test_apply_waits_for_a_long_transaction_on_a_touched_table_before_queueing(
    cli: Cli, db: Database
) -> None:
    db.execute("CREATE TABLE accounts (id int)")
    cli.write(1, "add_note", "ALTER TABLE accounts ADD COLUMN note text;", "SELECT 1;")
    ready = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(db, "accounts", ready, quiet_waiting(db)))
    holder.start()
    ready.wait(10)
    # The holder's transaction must be older than the first lock_timeout (500ms) to count.
    wait_for(
        lambda: (
            db.scalar(
                "SELECT bool_or(xact_start < clock_timestamp() - interval '0.6 seconds')"
                " FROM pg_stat_activity WHERE application_name = 'long-reader'"
            )
            is True
        )
    )
    done = cli("apply", "--no-backup", "--quiet-wait", "20s")
    holder.join()
    assert done.returncode == 0, done.stderr
    assert "waiting: pid" in done.stderr and "long-reader" in done.stderr
    # It waited instead of queueing an ALTER that would time out: no retries were needed.
    assert db.scalar("SELECT count(*) FROM migrate_safe.history WHERE outcome = 'retried'") == 0


def test_edited_applied_file_is_refused_naming_file_and_both_checksums(
    cli: Cli, db: Database
) -> None:
    path = cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert cli("apply").returncode == 0
    before = db.scalar("SELECT checksum FROM migrate_safe.applied")
    path.write_text("CREATE TABLE t (id bigint);")
    cli.write(2, "u", "CREATE TABLE u (id int);", "DROP TABLE u;")
    done = cli("apply")
    assert done.returncode == 2
    assert "001_t.up.sql: changed after it was applied" in done.stderr
    assert str(before) in done.stderr
    assert db.scalar("SELECT to_regclass('u')") is None
    drift = status(cli)["drift"]
    assert drift["checksum_mismatches"][0]["version"] == 1  # type: ignore[index]


def test_two_concurrent_applies_never_apply_a_version_twice(cli: Cli, db: Database) -> None:
    for version in range(1, 4):
        cli.write(
            version, f"slow{version}",
            f"CREATE TABLE t{version} (id int); SELECT pg_sleep(0.4);", f"DROP TABLE t{version};",
        )  # fmt: skip
    first, second = cli.start("apply"), cli.start("apply")
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    assert second.wait(60) == 0, second.stderr.read() if second.stderr else ""
    counts = db.rows(
        "SELECT version, count(*) FROM migrate_safe.history WHERE direction = 'up'"
        " AND outcome = 'succeeded' GROUP BY version ORDER BY version"
    )
    assert counts == [(1, 1), (2, 1), (3, 1)]


def test_advisory_lock_wait_gives_up_naming_the_holder(cli: Cli, db: Database) -> None:
    from migrate_safe.ledger import advisory_key

    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    with db.connect(application_name="other-deploy") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [advisory_key("migrate_safe")])
        pid = holder.info.backend_pid
        done = cli("apply", "--lock-wait", "0.5s")
    assert done.returncode == 2
    assert f"pid {pid} (other-deploy)" in done.stderr
