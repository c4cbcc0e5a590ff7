"""Lock queries: what our own backend holds (the rehearsal's lock report) and who else
holds locks on the relations a migration is about to touch (so we do not queue behind them).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import class_row, tuple_row

from migrate_safe.catalog import application_schema
from migrate_safe.session import TIMEOUTS_SELECT, timeout_parameters
from migrate_safe.statements import Relation


@dataclass(frozen=True, order=True)
class HeldLock:
    relation: str
    mode: str

    def names(self, relations: set[Relation]) -> bool:
        """Is this lock on one of the relations (unqualified names match any schema)?"""
        schema, _, name = self.relation.partition(".")
        return any(r.name == name and r.schema in (None, schema) for r in relations)


# Table lock modes from weakest to strongest (PostgreSQL docs, "Table-Level Locks").
MODE_STRENGTH = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]


def strongest(locks: set[HeldLock]) -> list[HeldLock]:
    """The strongest lock held on each relation."""
    best: dict[str, HeldLock] = {}
    for lock in locks:
        current = best.get(lock.relation)
        if current is None or MODE_STRENGTH.index(lock.mode) > MODE_STRENGTH.index(current.mode):
            best[lock.relation] = lock
    return sorted(best.values())


@dataclass(frozen=True)
class Blocker:
    pid: int
    application_name: str
    relation: str
    mode: str
    transaction_seconds: float


def own_relation_locks(conn: psycopg.Connection[Any], ledger_schema: str) -> set[HeldLock]:
    """Relation locks this backend holds now, without catalog and ledger noise.

    Locks only accumulate inside a transaction, so the difference before and after a
    statement is exactly what that statement took.
    """
    # A relation the catalog does not show (yet) is named by its oid.
    query = sql.SQL(
        "SELECT coalesce(n.nspname || '.' || c.relname, 'oid ' || l.relation::text) AS relation,"
        " l.mode"
        " FROM pg_locks l"
        " LEFT JOIN pg_class c ON c.oid = l.relation"
        " LEFT JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
        " AND {application}"
    ).format(
        application=application_schema(sql.SQL("coalesce(n.nspname, '')"), ledger=ledger_schema)
    )
    with conn.cursor(row_factory=class_row(HeldLock)) as cursor:
        return set(cursor.execute(query).fetchall())


def resolve_relations(conn: psycopg.Connection[Any], relations: AbstractSet[Relation]) -> list[int]:
    """OIDs of the named relations that exist now (a table created by the migration does not)."""
    names = sorted(str(r) for r in relations)  # schema may be None: sort the names
    if not names:
        return []
    rows = conn.execute(
        "SELECT DISTINCT to_regclass(name)::oid FROM unnest(%s::text[]) AS name"
        " WHERE to_regclass(name) IS NOT NULL",
        [names],
    ).fetchall()
    return [int(oid) for (oid,) in rows]


# The quiet-wait probe, in one query that resolves the names itself (a relation the migration
# creates does not exist yet and matches nothing). Written for a cheap plan and a cheap run,
# since it runs before every migration: the activity function instead of the pg_stat_activity
# view and relation names only for the rows found (pg_stat_activity and joins on pg_class took
# 8 ms of planning, this query 0.3 ms, prepared once). Only a transaction older than the
# threshold can be a long holder, so when this database has none (a quiet moment, a fresh
# deploy) the lock table is not read at all: `EXISTS (SELECT FROM long)` is a one-time filter,
# and the lock table is the costly part (all of the server's lock partitions). Locks of other
# databases are left out: their relation oids mean other relations.
_LONG_HOLDERS = """
WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database()),
long AS (
    SELECT a.pid, a.application_name, a.xact_start FROM pg_stat_get_activity(NULL) a
    WHERE a.pid <> pg_backend_pid() AND a.datid = (SELECT oid FROM here)
      AND a.xact_start < clock_timestamp() - make_interval(secs => %(older_than)s)
)
SELECT a.pid, coalesce(a.application_name, '') AS application_name,
       coalesce((SELECT n.nspname || '.' || c.relname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.relation),
                l.relation::text) AS relation,
       l.mode, extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       a.xact_start
FROM long a
JOIN pg_locks l ON l.pid = a.pid
WHERE EXISTS (SELECT FROM long)
  AND l.granted AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM here)
  AND l.relation = ANY (ARRAY(SELECT to_regclass(name)::oid FROM unnest(%(names)s::text[]) AS name))
"""
# The timeouts are set by the probe's own statement: one query less per migration for the
# client to send and read. The holders come back as one JSON array in the one row that the
# timeouts always make (a set_config in a query that found no rows would never run).
_TIMEOUTS_AND_LONG_HOLDERS = (
    f"SELECT {TIMEOUTS_SELECT},"
    " (SELECT coalesce(json_agg(h ORDER BY h.xact_start, h.relation), '[]')"
    f" FROM ({_LONG_HOLDERS}) h)"
)


def relation_names(relations: AbstractSet[Relation]) -> list[str]:
    """The names as the probe resolves them (schema may be None: sorted as text)."""
    return sorted(str(r) for r in relations)


@dataclass(frozen=True)
class Timeouts:
    """lock_timeout and statement_timeout, in seconds; `local`: for the current transaction
    only (as SET LOCAL), else for the session."""

    lock: float
    statement: float
    local: bool


class _HolderRow(TypedDict):
    """One element of the probe's JSON array: a row of _LONG_HOLDERS."""

    pid: int
    application_name: str
    relation: str
    mode: str
    transaction_seconds: float
    xact_start: str


class LongLockHolders:
    """The answer of `send_timeouts_and_long_lock_holders`, to read once its pipeline ended."""

    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cursor = cursor

    def fetch(self) -> list[Blocker]:
        row = self._cursor.fetchone()
        holders: list[_HolderRow] = row[2] if row else []
        return [
            Blocker(
                pid=holder["pid"],
                application_name=holder["application_name"],
                relation=holder["relation"],
                mode=holder["mode"],
                transaction_seconds=holder["transaction_seconds"],
            )
            for holder in holders
        ]


def send_timeouts_and_long_lock_holders(
    conn: psycopg.Connection[Any], names: list[str], timeouts: Timeouts
) -> LongLockHolders:
    """Set the timeouts, and find the other sessions whose transaction, older than the
    lock_timeout, holds a lock on one of the named relations: one query, whose answer is
    read later, so that it can travel in a pipeline with the statements around it.

    An ALTER queued behind such a transaction would make every later query on the table
    queue behind the ALTER: waiting before we ask for the lock avoids that outage.
    """
    cursor = conn.cursor(row_factory=tuple_row)
    cursor.execute(
        _TIMEOUTS_AND_LONG_HOLDERS,
        {
            **timeout_parameters(timeouts.lock, timeouts.statement, local=timeouts.local),
            "names": names,
            "older_than": timeouts.lock,
        },
    )
    return LongLockHolders(cursor)
