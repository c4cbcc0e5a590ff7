"""A migration file of a megabyte and more (a bulk INSERT of many rows) is split without
PostgreSQL's syntax tree of the whole file: it must still apply exactly, be linted like its
small version and show preflight the relations it touches."""

from __future__ import annotations

import json

import pytest

from migrate_safe.localpg import LocalPostgres
from tests.conftest import Cli, Database
from tests.db.test_preflight import long_transaction, preflight, transaction_older_than_a_second

pytestmark = pytest.mark.db

ROWS = 30_000  # about 1.2 MiB: past the size from which files are split frugally
TABLE = "CREATE TABLE items (id int PRIMARY KEY, name text, note text);"
ODD_NAME = "it's; ),( -- not a comment /* nor this */ $$"


def rows(count: int, separator: str = ",\n") -> str:
    return separator.join(
        f"({i}, 'item {i}', $note${ODD_NAME if i % 1000 == 0 else 'plain'}$note$)"
        for i in range(1, count + 1)
    )


ATOMIC_BODY = "BEGIN ATOMIC\n  SELECT count(*) FROM items;\nEND"
QUOTED_BODY = "AS $$\n  SELECT count(*) FROM items;\n$$"  # PostgreSQL 13 has no BEGIN ATOMIC


def load_file(count: int, separator: str = ",\n", body: str = ATOMIC_BODY) -> str:
    """A bulk INSERT before a function whose body holds a semicolon, and an index lint judges."""
    return (
        "-- the catalogue, loaded once\n"
        f"INSERT INTO items (id, name, note) VALUES {rows(count, separator)};\n"
        f"CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql\n{body};\n"
        "CREATE INDEX items_name ON items (name);\n"
    )


def test_a_bulk_insert_of_a_megabyte_and_more_applies_every_row(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    cli.write(1, "items", TABLE, "DROP TABLE items;")
    text = load_file(ROWS, body=ATOMIC_BODY if pg.major >= 14 else QUOTED_BODY)
    assert len(text) > 1024 * 1024
    cli.write(2, "load", text, "DROP FUNCTION item_count(); DELETE FROM items;")
    done = cli("apply", "--no-backup")
    assert done.returncode == 0, done.stderr
    assert db.scalar("SELECT item_count()") == ROWS
    assert db.scalar("SELECT sum(id) FROM items") == ROWS * (ROWS + 1) // 2
    assert db.scalar("SELECT note FROM items WHERE id = 1000") == ODD_NAME
    assert db.scalar("SELECT count(*) FROM items WHERE note = 'plain'") == ROWS - ROWS // 1000
    assert db.scalar("SELECT max(version) FROM migrate_safe.applied") == 2


def lint_findings(cli: Cli) -> list[tuple[str, int, int, str]]:
    report = json.loads(cli("lint", "--json").stdout)
    return [(f["rule"], f["line"], f["column"], f["message"]) for f in report["lint"]["findings"]]


def test_a_big_file_is_linted_like_its_small_version(cli: Cli) -> None:
    cli.write(1, "items", TABLE, "DROP TABLE items;")
    cli.write(2, "load", load_file(3, separator=", "), "DROP FUNCTION item_count();")
    small = lint_findings(cli)
    cli.write(2, "load", load_file(ROWS, separator=", "), "DROP FUNCTION item_count();")
    big = lint_findings(cli)
    assert big == small
    assert any(rule == "MS101" and line == 7 for rule, line, _, _ in big)  # the index after it


def test_preflight_sees_the_table_a_big_file_touches(cli: Cli, db: Database) -> None:
    db.execute(TABLE)
    cli.write(1, "load", load_file(ROWS), "DELETE FROM items;")
    with long_transaction(db, "SELECT * FROM items", "report-job"):
        transaction_older_than_a_second(db, "report-job")
        code, checks, _ = preflight(cli, "--long-transaction-seconds", "1")
    assert code == 1
    touched = checks["LongTransactionOnTouchedTable"]
    assert touched["evidence"][0]["relation"] == "items"  # type: ignore[index]
