"""Preflight against staged conditions: each check fails (or warns) when its condition is
staged by a second connection, and passes otherwise."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import Cli, Database, wait_for

pytestmark = pytest.mark.db


@contextmanager
def long_transaction(db: Database, statement: str, app: str) -> Iterator[int]:
    """A second session holding `statement`'s locks in an open transaction."""
    with db.connect(application_name=app) as conn:
        conn.execute("BEGIN")
        conn.execute(statement)
        yield conn.info.backend_pid
        conn.execute("ROLLBACK")


def transaction_older_than_a_second(db: Database, app: str) -> None:
    """Until the session's open transaction is older than preflight's 1s threshold."""
    wait_for(
        lambda: (
            db.scalar(
                "SELECT bool_or(xact_start < clock_timestamp() - interval '1.1 seconds')"
                " FROM pg_stat_activity WHERE application_name = %s",
                app,
            )
            is True
        )
    )


def idle_longer_than_a_second(db: Database, app: str) -> None:
    wait_for(
        lambda: (
            db.scalar(
                "SELECT bool_or(state LIKE 'idle in transaction%%'"
                " AND state_change < clock_timestamp() - interval '1.1 seconds')"
                " FROM pg_stat_activity WHERE application_name = %s",
                app,
            )
            is True
        )
    )


def blocked_longer_than_a_second(db: Database) -> None:
    wait_for(
        lambda: (
            db.scalar(
                "SELECT bool_or(wait_event_type = 'Lock'"
                " AND query_start < clock_timestamp() - interval '1.1 seconds')"
                " FROM pg_stat_activity WHERE datname = current_database()"
            )
            is True
        )
    )


def preflight(cli: Cli, *args: str) -> tuple[int, dict[str, dict[str, object]], str]:
    done = cli("preflight", "--json", *args)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["preflight"]["checks"]}
    return done.returncode, checks, done.stderr


@pytest.fixture
def accounts(cli: Cli, db: Database) -> None:
    db.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text);"
        "CREATE TABLE audit_log (id int); INSERT INTO accounts VALUES (1, 'secret-owner-name');"
    )
    cli.write(1, "add_note", "ALTER TABLE accounts ADD COLUMN note text;", "SELECT 1;")


def test_clean_database_passes(cli: Cli, accounts: None) -> None:
    code, checks, _ = preflight(cli)
    assert code == 0
    assert {c["status"] for c in checks.values()} == {"pass"}
    assert checks["Pending"]["summary"] == "1 pending: 1"


def test_long_transaction_on_touched_table_fails_preflight(
    cli: Cli, db: Database, accounts: None
) -> None:
    query = "SELECT * FROM accounts WHERE owner = 'secret-owner-name'"
    with long_transaction(db, query, "report-job") as pid:
        transaction_older_than_a_second(db, "report-job")
        code, checks, stderr = preflight(cli, "--long-transaction-seconds", "1")
    assert code == 1
    touched = checks["LongTransactionOnTouchedTable"]
    assert touched["status"] == "fail"
    evidence = touched["evidence"][0]  # type: ignore[index]
    assert (evidence["pid"], evidence["application_name"]) == (pid, "report-job")
    assert (evidence["relation"], evidence["mode"]) == ("accounts", "AccessShareLock")
    assert "secret-owner-name" not in json.dumps(checks)  # literals never leave the session
    assert "owner = ?" in evidence["query"]
    assert checks["LongTransactions"]["status"] == "warn"
    assert "report-job" in stderr


def test_long_transaction_on_an_unrelated_table_only_warns(
    cli: Cli, db: Database, accounts: None
) -> None:
    with long_transaction(db, "SELECT * FROM audit_log", "batch"):
        transaction_older_than_a_second(db, "batch")
        code, checks, _ = preflight(cli, "--long-transaction-seconds", "1")
    assert code == 0
    assert checks["LongTransactions"]["status"] == "warn"
    assert checks["LongTransactionOnTouchedTable"]["status"] == "pass"


def test_blocked_lock_chain_fails(cli: Cli, db: Database, accounts: None) -> None:
    with long_transaction(db, "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE", "holder"):
        waiter = threading.Thread(
            target=lambda: db.execute("LOCK TABLE audit_log IN SHARE MODE; SELECT 1")
        )
        waiter.start()
        blocked_longer_than_a_second(db)
        code, checks, _ = preflight(cli)
    waiter.join()
    assert code == 1
    assert checks["BlockingLocks"]["status"] == "fail"
    assert checks["BlockingLocks"]["evidence"][0]["blocking_application_name"] == "holder"  # type: ignore[index]


def test_idle_in_transaction_warns_and_severity_is_configurable(
    cli: Cli, db: Database, accounts: None
) -> None:
    with long_transaction(db, "SELECT 1", "forgotten-session"):
        idle_longer_than_a_second(db, "forgotten-session")
        code, checks, _ = preflight(cli, "--idle-in-transaction-seconds", "1")
        assert (code, checks["IdleInTransaction"]["status"]) == (0, "warn")
        (cli.workdir / "strict.toml").write_text(
            '[preflight]\nidle_in_transaction_seconds = 1\nfail_on = ["IdleInTransaction"]\n'
        )
        code, checks, _ = preflight(cli, "--config", "strict.toml")
        assert (code, checks["IdleInTransaction"]["status"]) == (1, "fail")


def test_unknown_check_names_and_config_keys_are_config_errors(cli: Cli, accounts: None) -> None:
    assert cli("preflight", "--fail-on", "NoSuchCheck").returncode == 5
    (cli.workdir / "migrate-safe.toml").write_text("[preflight]\nlong_transaction_secs = 5\n")
    done = cli("preflight")
    assert done.returncode == 5
    assert "long_transaction_secs" in done.stderr


def test_existing_invalid_index_and_unvalidated_constraint_warn(
    cli: Cli, db: Database, accounts: None
) -> None:
    db.execute(
        "CREATE INDEX accounts_owner_idx ON accounts (owner);"
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'accounts_owner_idx'::regclass;"
        "ALTER TABLE audit_log ADD CONSTRAINT positive CHECK (id > 0) NOT VALID;"
    )
    code, checks, _ = preflight(cli)
    assert code == 0
    assert checks["InvalidIndexes"]["status"] == "warn"
    assert checks["UnvalidatedConstraints"]["status"] == "warn"


def test_schema_changed_by_hand_is_reported_as_drift(
    cli: Cli, db: Database, accounts: None
) -> None:
    assert cli("apply", "--no-backup").returncode == 0
    cli.write(2, "more", "ALTER TABLE audit_log ADD COLUMN at timestamptz;", "SELECT 1;")
    _, checks, _ = preflight(cli)
    assert checks["SchemaDrift"]["status"] == "pass"
    db.execute("ALTER TABLE accounts ADD COLUMN added_by_hand int")
    _, checks, _ = preflight(cli)
    assert checks["SchemaDrift"]["status"] == "warn"
    assert "changed outside migrate-safe" in str(checks["SchemaDrift"]["summary"])


def test_apply_runs_preflight_first_and_force_overrides_it(
    cli: Cli, db: Database, accounts: None
) -> None:
    with long_transaction(db, "SELECT * FROM accounts", "report-job"):
        transaction_older_than_a_second(db, "report-job")
        refused = cli("apply", "--no-backup", "--long-transaction-seconds", "1")
        assert refused.returncode == 1
        assert "LongTransactionOnTouchedTable" in refused.stderr
        # A refused apply leaves nothing behind, not even the ledger.
        assert db.scalar("SELECT to_regnamespace('migrate_safe') IS NULL") is True
        forced = cli(
            "apply", "--no-backup", "--long-transaction-seconds", "1", "--force", "--json",
            "--quiet-wait", "0", "--lock-retries", "0",
        )  # fmt: skip
    # The forced apply still met the lock and failed after its bounded wait, but the report
    # says preflight was overridden.
    report = json.loads(forced.stdout)
    assert report["preflight"]["overridden_by_force"] is True


def test_pending_migration_with_a_lint_error_fails_preflight_until_allowed(
    cli: Cli, db: Database, accounts: None
) -> None:
    cli.write(2, "index", "CREATE INDEX accounts_owner_idx ON accounts (owner);", "SELECT 1;")
    # accounts is tiny, which lint now counts as harmless; a zero limit makes the index count.
    (cli.workdir / "migrate-safe.toml").write_text("[lint]\nsmall_table_rows = 0\n")
    code, checks, _ = preflight(cli)
    assert code == 1
    assert checks["Lint"]["status"] == "fail"
    assert checks["Lint"]["evidence"][0]["rule"] == "MS101"  # type: ignore[index]
    cli.write(
        2, "index",
        "-- migrate-safe:allow=MS101\nCREATE INDEX accounts_owner_idx ON accounts (owner);",
        "SELECT 1;",
    )  # fmt: skip
    code, checks, _ = preflight(cli)
    assert (code, checks["Lint"]["status"]) == (0, "pass")
