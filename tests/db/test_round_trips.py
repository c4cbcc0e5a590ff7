"""How many network round trips a migration costs, read from libpq's own protocol trace: the
apply path's speed on a real server is mostly waiting for answers, so the count is pinned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg.pq import Trace

from migrate_safe.config import ApplyPolicy, Redactor
from migrate_safe.engine import Engine
from migrate_safe.ledger import Ledger
from migrate_safe.report import Reporter
from migrate_safe.scanner import scan_directory
from tests.conftest import Database

pytestmark = pytest.mark.db

# A message that makes the client wait for the server: Sync ends a batch of extended-protocol
# messages (a pipeline), Query is one simple-protocol query.
_ROUND_TRIP = re.compile(r"^F\t\d+\t(Sync|Query)\b", re.MULTILINE)

STEPS = [
    ("CREATE TABLE accounts (id int PRIMARY KEY, note text);", "DROP TABLE accounts;"),
    ("ALTER TABLE accounts ADD COLUMN c int;", "ALTER TABLE accounts DROP COLUMN c;"),
    ("CREATE INDEX accounts_note_idx ON accounts (note);", "DROP INDEX accounts_note_idx;"),
    ("INSERT INTO accounts SELECT g FROM generate_series(1, 10) g;", "DELETE FROM accounts;"),
    (
        "-- migrate-safe:allow=MS101\nALTER TABLE accounts ADD COLUMN d int;\n"
        "COMMENT ON COLUMN accounts.d IS 'two statements';",
        "ALTER TABLE accounts DROP COLUMN d;",
    ),
    (
        "-- migrate-safe:no-transaction\nCREATE INDEX CONCURRENTLY accounts_c_idx ON accounts (c);",
        "DROP INDEX accounts_c_idx;",
    ),
]


def round_trips_of_each(
    db: Database, tmp_path: Path, steps: list[tuple[str, str]] = STEPS
) -> list[int]:
    """Apply the steps one by one on a traced connection; the round trips each one cost."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for version, (up, down) in enumerate(steps, start=1):
        (directory / f"{version}_step.up.sql").write_text(up)
        (directory / f"{version}_step.down.sql").write_text(down)
    migrations = scan_directory(directory).migrations()
    report = Reporter("apply", tmp_path / "logs", Redactor(), quiet=True)
    trace = tmp_path / "trace.txt"
    counts: list[int] = []
    with db.connect() as conn, trace.open("w") as sink:
        ledger = Ledger(conn, "migrate_safe")
        ledger.ensure()
        engine = Engine(conn, ledger, ApplyPolicy(), report)
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        for migration in migrations:
            before = len(_ROUND_TRIP.findall(trace.read_text()))
            engine.apply(migration)
            sink.flush()
            counts.append(len(_ROUND_TRIP.findall(trace.read_text())) - before)
        conn.pgconn.untrace()
    return counts


def test_a_migration_costs_one_round_trip_per_statement_plus_two(
    db: Database, tmp_path: Path
) -> None:
    # In a transaction: BEGIN + timeouts + quiet-wait probe; each statement; ledger row +
    # history row + COMMIT. Without: the dirty row; per statement the timeouts and probe, the
    # statement and its progress; the applied row.
    assert round_trips_of_each(db, tmp_path) == [3, 3, 3, 3, 4, 5]
    applied = db.rows("SELECT version, state FROM migrate_safe.applied ORDER BY version")
    assert applied == [(v, "applied") for v in range(1, len(STEPS) + 1)]
    history = db.rows("SELECT version, outcome FROM migrate_safe.history ORDER BY id")
    # The no-transaction migration's row says it started before it ran, then that it ended.
    assert history == [(v, "succeeded") for v in range(1, 6)] + [(6, "started"), (6, "succeeded")]


def test_alter_and_drop_in_migrations_leave_the_engine_s_queries_prepared(
    db: Database, tmp_path: Path
) -> None:
    # psycopg drops every prepared statement after an ALTER or DROP it runs; the engine keeps
    # migrations' statements out of that cache, so its own queries stay prepared on the server
    # (parsed and planned once per run) and no migration pays a round trip for DEALLOCATE.
    steps = [
        step
        for n in range(6)
        for step in (
            (f"CREATE TABLE t{n} (id int);", f"DROP TABLE t{n};"),
            (f"ALTER TABLE t{n} ADD COLUMN c int;", f"ALTER TABLE t{n} DROP COLUMN c;"),
            (f"DROP TABLE t{n};", f"CREATE TABLE t{n} (id int, c int);"),
        )
    ]
    assert round_trips_of_each(db, tmp_path, steps) == [3] * len(steps)
    # Nor did psycopg ever tell the server to forget them.
    assert "DEALLOCATE" not in (tmp_path / "trace.txt").read_text()
