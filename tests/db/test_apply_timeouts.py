"""The timeouts a migration's statements run under, as the server reports them to those
statements: set in the quiet-wait probe's query when the file names tables, on their own when
it names none, and for the session in a no-transaction file."""

from __future__ import annotations

import pytest

from tests.conftest import Cli, Database

pytestmark = pytest.mark.db

DIRECTIVES = "-- migrate-safe:lock-timeout=1500ms\n-- migrate-safe:statement-timeout=42s\n"
RECORD = (
    "CREATE TABLE {table} AS SELECT current_setting('lock_timeout') AS lock_timeout,"
    " current_setting('statement_timeout') AS statement_timeout"
)


def applied_timeouts(cli: Cli, db: Database, table: str) -> list[tuple[object, ...]]:
    done = cli("apply", "--no-backup", "--skip-preflight")
    assert done.returncode == 0, done.stderr
    return db.rows(f"SELECT lock_timeout, statement_timeout FROM {table}")


def test_a_migration_naming_a_table_runs_under_its_timeouts(cli: Cli, db: Database) -> None:
    cli.write(1, "seen", DIRECTIVES + RECORD.format(table="seen") + ";", "DROP TABLE seen;")
    assert applied_timeouts(cli, db, "seen") == [("1500ms", "42s")]


def test_a_migration_naming_no_table_runs_under_its_timeouts(cli: Cli, db: Database) -> None:
    # A DO block's body is a string to the parser: the file names no relation to probe for.
    body = f"DO $$ BEGIN {RECORD.format(table='seen_in_do')}; END $$;"
    cli.write(1, "seen_in_do", DIRECTIVES + body, "DROP TABLE seen_in_do;")
    assert applied_timeouts(cli, db, "seen_in_do") == [("1500ms", "42s")]


def test_a_no_transaction_migration_runs_under_its_timeouts(cli: Cli, db: Database) -> None:
    up = "-- migrate-safe:no-transaction\n" + DIRECTIVES + RECORD.format(table="seen") + ";"
    cli.write(1, "seen", up, "DROP TABLE seen;")
    assert applied_timeouts(cli, db, "seen") == [("1500ms", "42s")]
