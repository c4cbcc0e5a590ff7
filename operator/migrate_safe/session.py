"""Database sessions: connecting with a redacted error, timeouts, and the run-wide advisory
lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from migrate_safe.config import Settings, describe_dsn
from migrate_safe.durations import format_duration
from migrate_safe.errors import DatabaseUnavailable, MigrationFailed
from migrate_safe.ledger import (
    Ledger,
    acquire_advisory_lock,
    advisory_holder,
    advisory_key,
    advisory_unlock,
)


@contextmanager
def connect(settings: Settings, purpose: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection named `migrate-safe/<purpose>` in pg_stat_activity."""
    dsn = settings.require_database_url()
    where = describe_dsn(dsn)
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, application_name=f"migrate-safe/{purpose}", connect_timeout=10
        )
    except psycopg.OperationalError as error:
        reason = settings.redact(str(error).strip().splitlines()[-1] if str(error) else "")
        raise DatabaseUnavailable(f"cannot connect to {where}: {reason}") from None
    try:
        if conn.info.server_version >= 140000:
            # If this process dies mid-statement, the server notices within a second and ends
            # the backend, releasing its locks instead of running on as an orphan.
            conn.execute("SET client_connection_check_interval = 1000")
            # A role's or database's idle_session_timeout (14+) would end the session while it
            # waits, idle, for pg_dump or for a quiet table, and the advisory lock with it.
            conn.execute("SET idle_session_timeout = 0")
        if conn.info.server_version >= 170000:
            # A role's or database's transaction_timeout (17+) ends the whole session when a
            # transaction outlives it: mid-migration, the run would lose its advisory lock and
            # its history row. lock_timeout and statement_timeout bound the harness's work.
            conn.execute("SET transaction_timeout = 0")
        yield conn
    finally:
        conn.close()


# Constant texts, so psycopg converts each once and prepares it on the server after a few
# uses: the engine sets timeouts for every migration.
_SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, %s)"
# Both timeouts as a select list: sent alone here, and inside the engine's lock probe
# (locks.py), which sets them in its own query. Its parameters: `timeout_parameters`.
TIMEOUTS_SELECT = (
    "set_config('lock_timeout', %(lock_timeout)s, %(local)s),"
    " set_config('statement_timeout', %(statement_timeout)s, %(local)s)"
)
_SET_BOTH_TIMEOUTS = f"SELECT {TIMEOUTS_SELECT}"


def timeout_parameters(
    lock_timeout: float, statement_timeout: float, *, local: bool
) -> dict[str, str | bool]:
    return {
        "lock_timeout": format_duration(lock_timeout),
        "statement_timeout": format_duration(statement_timeout),
        "local": local,
    }


def set_timeouts(
    conn: psycopg.Connection[Any],
    *,
    lock_timeout: float,
    statement_timeout: float | None = None,
    local: bool,
) -> None:
    """Set lock_timeout (and statement_timeout) for the current transaction (`local`: as SET
    LOCAL does, gone at its end) or for the session (until RESET), in one round trip."""
    if statement_timeout is None:
        conn.execute(_SET_LOCK_TIMEOUT, [format_duration(lock_timeout), local])
        return
    conn.execute(
        _SET_BOTH_TIMEOUTS, timeout_parameters(lock_timeout, statement_timeout, local=local)
    )


@contextmanager
def local_timeouts(
    conn: psycopg.Connection[Any], *, lock_timeout: float, statement_timeout: float | None = None
) -> Iterator[None]:
    """A transaction whose queries give up waiting for a lock after `lock_timeout` (SQLSTATE
    55P03, psycopg.errors.LockNotAvailable), the session's own settings untouched after it."""
    with conn.transaction():
        set_timeouts(
            conn, lock_timeout=lock_timeout, statement_timeout=statement_timeout, local=True
        )
        yield


@contextmanager
def exclusive(ledger: Ledger, wait_seconds: float) -> Iterator[None]:
    """Hold the ledger's session-level advisory lock; name the holder if it stays taken."""
    key = advisory_key(ledger.schema)
    if not acquire_advisory_lock(ledger.conn, key, wait_seconds):
        holder = advisory_holder(ledger.conn, key)
        who = (
            f"pid {holder.pid} ({holder.application_name or 'no application_name'})"
            if holder
            else "another session"
        )
        raise MigrationFailed(
            f"another migration run holds the lock of ledger {ledger.schema}: {who}; "
            f"gave up after {wait_seconds:g}s (--lock-wait)",
            details={"holder_pid": holder.pid if holder else None},
            transient=True,
        )
    try:
        yield
    finally:
        if not ledger.conn.closed:
            advisory_unlock(ledger.conn, key)


@contextmanager
def locked_ledger(settings: Settings, purpose: str, *, create: bool = True) -> Iterator[Ledger]:
    """A connection holding the ledger's advisory lock, the ledger created unless `create`
    is False (a rehearsal changes nothing, not even that)."""
    with connect(settings, purpose) as conn:
        ledger = Ledger(conn, settings.ledger_schema)
        with exclusive(ledger, settings.policy.advisory_lock_wait):
            if create:
                ledger.ensure()
            yield ledger
