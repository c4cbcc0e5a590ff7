"""The ledger: applied versions, the append-only history, the advisory lock, dirty state.

The ledger lives in its own schema (default `migrate_safe`) so it never collides with
application tables. Its own layout is versioned in `ledger_meta` and upgraded in place, so
a database migrated by an older release keeps working with a newer one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from migrate_safe import __version__
from migrate_safe.errors import ConfigError, MigrationFailed
from migrate_safe.scanner import Migration, Script

# Each entry upgrades the ledger from the previous layout; never edit a released entry.
_LAYOUTS: list[str] = [
    """
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE {schema}.ledger_meta (
        key text PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE {schema}.applied (
        version bigint PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        down_sql text,
        down_checksum text,
        no_transaction boolean NOT NULL DEFAULT false,
        state text NOT NULL CHECK (state IN ('applied', 'dirty')),
        statements_done integer NOT NULL DEFAULT 0,
        applied_at timestamptz NOT NULL DEFAULT now(),
        duration_ms integer,
        applied_by text NOT NULL DEFAULT current_user,
        run_id text NOT NULL
    );
    CREATE TABLE {schema}.history (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        version bigint,
        name text,
        direction text NOT NULL,
        outcome text NOT NULL,
        attempt integer NOT NULL DEFAULT 1,
        sqlstate text,
        error text,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        duration_ms integer,
        applied_by text NOT NULL DEFAULT current_user,
        tool_version text NOT NULL,
        details jsonb NOT NULL DEFAULT '{{}}'
    );
    CREATE INDEX history_version_idx ON {schema}.history (version, id);
    -- History is evidence: refuse edits so it stays append-only.
    CREATE FUNCTION {schema}.history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'migrate-safe history is append-only';
    END $$;
    CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON {schema}.history
        FOR EACH ROW EXECUTE FUNCTION {schema}.history_append_only();
    """,
    # Layout 2: the schema fingerprint after each successful run, for drift detection.
    """
    ALTER TABLE {schema}.history ADD COLUMN fingerprint text;
    """,
]
LEDGER_LAYOUT = len(_LAYOUTS)
# Every relation and function the layouts above create: anything else in the ledger's schema
# belongs to someone else. Extend these with each new layout.
_OWN_RELATIONS = ["ledger_meta", "applied", "history", "history_id_seq"]
_OWN_FUNCTIONS = ["history_append_only"]


@dataclass(frozen=True)
class AppliedRow:
    version: int
    name: str
    checksum: str
    down_sql: str | None
    down_checksum: str | None
    no_transaction: bool
    state: str
    statements_done: int
    applied_at: datetime
    duration_ms: int | None
    applied_by: str
    run_id: str

    @property
    def dirty(self) -> bool:
        return self.state == "dirty"


@dataclass(frozen=True)
class HistoryEntry:
    run_id: str
    direction: str
    outcome: str
    started_at: datetime
    version: int | None = None
    name: str | None = None
    attempt: int = 1
    sqlstate: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    fingerprint: str | None = None
    details: str = "{}"


@dataclass(frozen=True)
class HistoryRow:
    """One attempt as the history table keeps it."""

    id: int
    run_id: str
    version: int | None
    name: str | None
    direction: str
    outcome: str
    attempt: int
    sqlstate: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class _GolangMigrateRow:
    version: int
    dirty: bool


@dataclass(frozen=True)
class LedgerSnapshot:
    """What a rehearsal must leave exactly as it found: the ledger's existence, its rows and
    the length of its history."""

    exists: bool
    applied: tuple[tuple[int, str, str], ...]  # version, state, checksum
    history_rows: int

    def changes(self, after: LedgerSnapshot) -> list[str]:
        found: list[str] = []
        if after.exists != self.exists:
            found.append("the ledger was " + ("created" if after.exists else "dropped"))
        if after.applied != self.applied:
            found.append(
                f"ledger rows changed: {len(self.applied)} before, {len(after.applied)} after"
            )
        if after.history_rows != self.history_rows:
            added = after.history_rows - self.history_rows
            found.append(f"{added} history row(s) were written")
        return found


class Ledger:
    """SQL for one ledger schema over one connection (autocommit; callers open transactions)."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self._schema_is_own = False
        self._queries: dict[str, str] = {}

    def _q(self, template: str) -> str:
        """The template with the ledger's schema filled in, composed once per connection:
        the engine writes the ledger for every migration, and a constant text is converted
        once by psycopg and prepared by the server."""
        query = self._queries.get(template)
        if query is None:
            composed = sql.SQL(template).format(schema=sql.Identifier(self.schema))
            query = self._queries[template] = composed.as_string(self.conn)
        return query

    # --- layout -----------------------------------------------------------------------

    def exists(self) -> bool:
        # Read-only commands must not create the ledger, so they ask first.
        self.require_own_schema()
        query = "SELECT to_regclass(format('%%I.applied', %s::text)) IS NOT NULL"
        return _scalar(self.conn, query, [self.schema]) is True

    def require_own_schema(self) -> None:
        """Refuse a ledger schema that also holds other objects (e.g. an application's
        tables): the fingerprint and the drift check skip the ledger's schema, so changes to
        them would go unseen. Checked once per connection, before the ledger is read or made."""
        if self._schema_is_own:
            return
        # One foreign object is enough to name; relation kinds cover tables, views,
        # sequences and composite types, pg_type the enums, domains and ranges.
        row = self.conn.execute(
            """
            SELECT found.description FROM (
                SELECT format('%%s %%I.%%I', CASE c.relkind WHEN 'v' THEN 'view'
                           WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                           WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type'
                           ELSE 'table' END, %(schema)s::text, c.relname) AS description
                FROM pg_class c
                WHERE c.relnamespace = to_regnamespace(%(schema)s)
                  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
                  AND c.relname <> ALL (%(relations)s)
                UNION ALL
                SELECT format('function %%I.%%I', %(schema)s::text, p.proname)
                FROM pg_proc p
                WHERE p.pronamespace = to_regnamespace(%(schema)s)
                  AND p.proname <> ALL (%(functions)s)
                UNION ALL
                SELECT format('type %%I.%%I', %(schema)s::text, t.typname)
                FROM pg_type t
                WHERE t.typnamespace = to_regnamespace(%(schema)s)
                  AND t.typtype IN ('e', 'd', 'r', 'm')
            ) found
            ORDER BY found.description
            LIMIT 1
            """,
            {"schema": self.schema, "relations": _OWN_RELATIONS, "functions": _OWN_FUNCTIONS},
        ).fetchone()
        if row:
            (foreign,) = row
            raise ConfigError(
                f"ledger schema {self.schema} (--ledger-schema) also holds {foreign}, which is "
                "not part of the ledger: the fingerprint and the drift check skip the ledger's "
                "schema, so changes there would go unseen; give the ledger a schema of its own"
            )
        self._schema_is_own = True

    def layout(self) -> int:
        if not self.exists():
            return 0
        layout = _scalar(
            self.conn, self._q("SELECT value FROM {schema}.ledger_meta WHERE key = 'layout'")
        )
        return int(str(layout)) if layout is not None else 0

    def ensure(self) -> None:
        """Create the ledger or upgrade its layout; call while holding the advisory lock."""
        current = self.layout()
        if current > LEDGER_LAYOUT:
            raise ConfigError(
                f"ledger schema {self.schema} has layout {current}, newer than this "
                f"migrate-safe ({__version__}) understands ({LEDGER_LAYOUT}); upgrade migrate-safe"
            )
        for number in range(current + 1, LEDGER_LAYOUT + 1):
            with self.conn.transaction():
                self.conn.execute(self._q(_LAYOUTS[number - 1]))
                self.conn.execute(
                    self._q(
                        "INSERT INTO {schema}.ledger_meta (key, value) VALUES ('layout', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    ),
                    [str(number)],
                )

    # --- applied rows -----------------------------------------------------------------

    def applied(self) -> list[AppliedRow]:
        if not self.exists():
            return []
        with self.conn.cursor(row_factory=class_row(AppliedRow)) as cur:
            cur.execute(
                self._q(
                    "SELECT version, name, checksum, down_sql, down_checksum, no_transaction,"
                    " state, statements_done, applied_at, duration_ms, applied_by, run_id"
                    " FROM {schema}.applied ORDER BY version"
                )
            )
            return cur.fetchall()

    def snapshot(self) -> LedgerSnapshot:
        if not self.exists():
            return LedgerSnapshot(False, (), 0)
        applied = tuple((row.version, row.state, row.checksum) for row in self.applied())
        history_rows = _scalar(self.conn, self._q("SELECT count(*) FROM {schema}.history"))
        return LedgerSnapshot(True, applied, int(str(history_rows)))

    def upsert(
        self,
        migration: Migration,
        *,
        state: str,
        run_id: str,
        duration_ms: int | None = None,
        history: HistoryEntry | None = None,
    ) -> None:
        """Record a version with its down SQL, so a rollback never depends on the source; with
        `history`, its history row in the same statement."""
        down: Script | None = migration.down
        params = [
            migration.version,
            migration.name,
            migration.up.checksum,
            down.text if down else None,
            down.checksum if down else None,
            migration.up.directives.no_transaction,
            state,
            duration_ms,
            run_id,
        ]
        self._change_applied(_UPSERT, params, history)

    def set_progress(self, version: int, statements_done: int) -> None:
        self.conn.execute(
            self._q("UPDATE {schema}.applied SET statements_done = %s WHERE version = %s"),
            [statements_done, version],
        )

    def set_state(self, version: int, state: str, *, duration_ms: int | None = None) -> None:
        self.conn.execute(
            self._q(
                "UPDATE {schema}.applied SET state = %s,"
                " duration_ms = coalesce(%s, duration_ms) WHERE version = %s"
            ),
            [state, duration_ms, version],
        )

    def realign(self, version: int, checksum: str, down: Script | None) -> None:
        self.conn.execute(
            self._q(
                "UPDATE {schema}.applied SET checksum = %s, down_sql = %s, down_checksum = %s"
                " WHERE version = %s"
            ),
            [checksum, down.text if down else None, down.checksum if down else None, version],
        )

    def delete(self, version: int, *, history: HistoryEntry | None = None) -> None:
        """Forget a version; with `history`, write its history row in the same statement."""
        self._change_applied("DELETE FROM {schema}.applied WHERE version = %s", [version], history)

    def _change_applied(
        self, change: str, params: list[object], history: HistoryEntry | None
    ) -> None:
        """One change of the applied table, and with `history` its history row in the same
        statement (a data-modifying WITH): the engine writes both for every migration, and one
        statement is one parse, plan and execution for the server instead of two."""
        if history is None:
            self.conn.execute(self._q(change), params)
            return
        self.conn.execute(
            self._q(f"WITH change AS ({change}) {_APPEND_HISTORY}"),
            [*params, *_history_params(history)],
        )

    # --- history ----------------------------------------------------------------------

    def append_history(self, entry: HistoryEntry) -> None:
        self.conn.execute(self._q(_APPEND_HISTORY), _history_params(entry))

    def last_fingerprint(self) -> tuple[str, str] | None:
        """The fingerprint recorded by the last successful run, and that run's id."""
        if self.layout() < 2:
            return None
        with self.conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
                self._q(
                    "SELECT fingerprint, run_id FROM {schema}.history"
                    " WHERE fingerprint IS NOT NULL ORDER BY id DESC LIMIT 1"
                )
            ).fetchone()
        return (str(row["fingerprint"]), str(row["run_id"])) if row else None

    def history(self) -> list[HistoryRow]:
        """Every attempt ever recorded, oldest first (empty before the ledger exists)."""
        if not self.exists():
            return []
        with self.conn.cursor(row_factory=class_row(HistoryRow)) as cursor:
            return cursor.execute(
                self._q(
                    "SELECT id, run_id, version, name, direction, outcome, attempt, sqlstate,"
                    " error, started_at, finished_at FROM {schema}.history ORDER BY id"
                )
            ).fetchall()

    # --- adopting a database golang-migrate ran ---------------------------------------------

    def golang_migrate_version(self, table: str) -> int:
        """The version golang-migrate's table (`schema_migrations`, or `schema.table`) is at;
        refuses an empty or dirty one."""
        what = f"--from-golang-migrate: {table}"
        try:
            with self.conn.cursor(row_factory=class_row(_GolangMigrateRow)) as cursor:
                row = cursor.execute(
                    sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(
                        sql.Identifier(*table.split("."))
                    )
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            raise ConfigError(f"--from-golang-migrate: table {table} not found") from None
        if row is None:
            raise ConfigError(f"{what} is empty (nothing applied)")
        if row.dirty:
            raise MigrationFailed(
                f"golang-migrate's {table} is dirty at {row.version}; fix it first"
            )
        return row.version


_UPSERT = (
    "INSERT INTO {schema}.applied (version, name, checksum, down_sql, down_checksum,"
    " no_transaction, state, duration_ms, run_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (version) DO UPDATE SET name = excluded.name,"
    " checksum = excluded.checksum, down_sql = excluded.down_sql,"
    " down_checksum = excluded.down_checksum, no_transaction = excluded.no_transaction,"
    " state = excluded.state, duration_ms = excluded.duration_ms,"
    " applied_at = now(), applied_by = current_user, run_id = excluded.run_id"
)
_APPEND_HISTORY = (
    "INSERT INTO {schema}.history (run_id, version, name, direction, outcome, attempt,"
    " sqlstate, error, started_at, duration_ms, tool_version, details, fingerprint)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
)


def _history_params(entry: HistoryEntry) -> list[object]:
    return [
        entry.run_id,
        entry.version,
        entry.name,
        entry.direction,
        entry.outcome,
        entry.attempt,
        entry.sqlstate,
        entry.error,
        entry.started_at,
        entry.duration_ms,
        __version__,
        entry.details,
        entry.fingerprint,
    ]


def _scalar(
    conn: psycopg.Connection[Any], query: str | sql.Composed, params: Sequence[object] = ()
) -> object:
    """The one value a query returns (None when it returns no row)."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


# --- the advisory lock ----------------------------------------------------------------


def advisory_key(schema: str) -> int:
    """A stable signed 64-bit key per ledger schema, so two ledgers never block each other."""
    digest = hashlib.sha256(f"migrate-safe:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str
    backend_start: datetime | None


def try_advisory_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    return _scalar(conn, "SELECT pg_try_advisory_lock(%s)", [key]) is True


def advisory_unlock(conn: psycopg.Connection[Any], key: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def advisory_holder(conn: psycopg.Connection[Any], key: int) -> LockHolder | None:
    """Who holds our advisory lock, so a waiting run can name it (bigint keys split in two)."""
    with conn.cursor(row_factory=class_row(LockHolder)) as cursor:
        return cursor.execute(
            "SELECT l.pid, coalesce(a.application_name, '') AS application_name, a.backend_start"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = ((%s::bigint >> 32) & 4294967295)"
            " AND l.objid::bigint = (%s::bigint & 4294967295)",
            [key, key],
        ).fetchone()


def acquire_advisory_lock(conn: psycopg.Connection[Any], key: int, wait_seconds: float) -> bool:
    """Poll pg_try_advisory_lock with backoff until the deadline.

    Polling (not a blocking pg_advisory_lock) keeps us out of lock queues where a
    CREATE INDEX CONCURRENTLY could wait on our own session.
    """
    deadline = time.monotonic() + wait_seconds
    pause = 0.05
    while True:
        if try_advisory_lock(conn, key):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)
