"""Apply, rollback and rehearsal: transactions, timeouts, retries.

Each transactional migration runs in one transaction with `SET LOCAL lock_timeout` and
`statement_timeout`, together with its ledger row and history entry. A waiting ALTER is the
outage (every later query on the table queues behind it), so lock_timeout starts short and
escalates across bounded retries on SQLSTATE 55P03, and before each attempt the engine waits
(bounded) until no long transaction holds a lock on the tables the migration touches.
No-transaction migrations run statement by statement in autocommit and stay `dirty` in the
ledger until their last statement finished, so a crash is visible, never silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from migrate_safe.config import ApplyPolicy, format_duration
from migrate_safe.errors import MigrateSafeError, MigrationFailed, RollbackFailed
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.locks import long_lock_holders, own_relation_locks, resolve_relations
from migrate_safe.plan import RollbackStep
from migrate_safe.report import Reporter
from migrate_safe.source import Migration, Script
from migrate_safe.statements import (
    SqlSyntaxError,
    Statement,
    concurrent_index,
    split_statements,
    touched_relations,
)


@dataclass
class StatementFailed(Exception):
    """A PostgreSQL error raised by one statement of a script."""

    script: Script
    statement: Statement
    error: psycopg.Error

    @property
    def lock_timeout(self) -> bool:
        return isinstance(self.error, pg_errors.LockNotAvailable)

    def as_dict(self) -> dict[str, Any]:
        diag = self.error.diag
        return {
            "file": self.script.origin,
            "line": self.statement.line,
            "sqlstate": self.error.sqlstate,
            "message": diag.message_primary or str(self.error).strip(),
            "detail": diag.message_detail,
            "hint": diag.message_hint,
            "statement": _shorten(self.statement.sql),
        }

    def describe(self) -> str:
        info = self.as_dict()
        text = f"{info['file']}:{info['line']}: {info['message']} (SQLSTATE {info['sqlstate']})"
        return text + (f"\n  detail: {info['detail']}" if info["detail"] else "")


def _shorten(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _millis(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def script_statements(script: Script) -> list[Statement]:
    """The statements to execute; a file the parser rejects is sent whole, so PostgreSQL
    reports the error in its own words (no-transaction files must parse: see _split_strict)."""
    try:
        return split_statements(script.text)
    except SqlSyntaxError:
        return [Statement(script.text, 1)]


def _split_strict(script: Script) -> list[Statement]:
    try:
        return split_statements(script.text)
    except SqlSyntaxError as error:
        raise MigrationFailed(
            f"{script.origin}: {error}; a no-transaction migration must parse before any "
            "statement runs, so nothing was executed",
            details={"file": script.origin, "line": error.line, "column": error.column},
        ) from None


@dataclass
class Outcome:
    version: int
    name: str
    duration_ms: int
    attempts: int


class Engine:
    def __init__(
        self, conn: psycopg.Connection[Any], ledger: Ledger, policy: ApplyPolicy, report: Reporter
    ) -> None:
        self.conn = conn
        self.ledger = ledger
        self.policy = policy
        self.report = report

    # --- apply ---------------------------------------------------------------------------

    def apply(self, migrations: list[Migration]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for migration in migrations:
            self.report.event("migration_started", version=migration.version, name=migration.name)
            started = time.monotonic()
            if migration.up.directives.no_transaction:
                attempts = self._apply_autocommit(migration)
            else:
                attempts = self._apply_transactional(migration)
            outcome = Outcome(migration.version, migration.name, _millis(started), attempts)
            outcomes.append(outcome)
            self.report.event("migration_succeeded", **outcome.__dict__)
            retry_note = f" after {attempts} attempts" if attempts > 1 else ""
            self.report.progress(f"  ✓ {migration.label}  {outcome.duration_ms} ms{retry_note}")
        return outcomes

    def _apply_transactional(self, migration: Migration) -> int:
        def finish(duration_ms: int, attempt: int) -> None:
            self.ledger.upsert(
                migration, state="applied", run_id=self.report.run_id, duration_ms=duration_ms
            )
            self._history(migration.version, migration.name, "up", "succeeded", attempt=attempt)

        return self._run_in_transaction(
            migration.up, migration.version, migration.name, "up", finish, MigrationFailed
        )

    def _apply_autocommit(self, migration: Migration) -> int:
        statements = _split_strict(migration.up)
        started = time.monotonic()
        with self.conn.transaction():
            self.ledger.upsert(migration, state="dirty", run_id=self.report.run_id)
            self._history(migration.version, migration.name, "up", "started")
        attempts = self._run_autocommit(
            migration.up, statements, migration.version, migration.name, "up", MigrationFailed
        )
        with self.conn.transaction():
            self.ledger.set_state(migration.version, "applied", duration_ms=_millis(started))
            self._history(migration.version, migration.name, "up", "succeeded", attempt=attempts)
        return attempts

    # --- rollback ------------------------------------------------------------------------

    def rollback(self, steps: list[RollbackStep]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for step in steps:
            row = step.row
            self.report.event("rollback_started", version=row.version, name=row.name)
            started = time.monotonic()
            if step.down.directives.no_transaction:
                attempts = self._rollback_autocommit(step)
            else:
                attempts = self._rollback_transactional(step)
            outcome = Outcome(row.version, row.name, _millis(started), attempts)
            outcomes.append(outcome)
            self.report.event("rollback_succeeded", **outcome.__dict__)
            self.report.progress(f"  ↶ {row.version}_{row.name}  {outcome.duration_ms} ms")
        return outcomes

    def _rollback_transactional(self, step: RollbackStep) -> int:
        row = step.row

        def finish(duration_ms: int, attempt: int) -> None:
            self.ledger.delete(row.version)
            self._history(
                row.version, row.name, "down", "succeeded", attempt=attempt, ms=duration_ms
            )

        return self._run_in_transaction(
            step.down, row.version, row.name, "down", finish, RollbackFailed
        )

    def _rollback_autocommit(self, step: RollbackStep) -> int:
        row = step.row
        statements = _split_strict(step.down)
        with self.conn.transaction():
            self.ledger.set_state(row.version, "dirty")
            self._history(row.version, row.name, "down", "started")
        attempts = self._run_autocommit(
            step.down, statements, row.version, row.name, "down", RollbackFailed
        )
        with self.conn.transaction():
            self.ledger.delete(row.version)
            self._history(row.version, row.name, "down", "succeeded", attempt=attempts)
        return attempts

    # --- the two ways of running a script ---------------------------------------------------

    def _run_in_transaction(
        self,
        script: Script,
        version: int,
        name: str,
        direction: str,
        finish: Callable[[int, int], None],
        failure: type[MigrateSafeError],
    ) -> int:
        """Run the whole script plus `finish` (ledger row, history) atomically, with retries."""
        statements = script_statements(script)
        relations = touched_relations(script.text)
        for attempt in range(1, self.policy.lock_retries + 2):
            lock_timeout = self.policy.lock_timeout_for(attempt, script.directives.lock_timeout)
            self._wait_until_quiet(resolve_relations(self.conn, relations), lock_timeout)
            started = time.monotonic()
            try:
                with self.conn.transaction():
                    self._set_timeouts(script, lock_timeout, local=True)
                    for statement in statements:
                        self._execute(script, statement)
                    finish(_millis(started), attempt)
                return attempt
            except StatementFailed as failed:
                self._after_failure(failed, version, name, direction, attempt, failure)
        raise AssertionError("unreachable: _after_failure raises on the last attempt")

    def _run_autocommit(
        self,
        script: Script,
        statements: list[Statement],
        version: int,
        name: str,
        direction: str,
        failure: type[MigrateSafeError],
    ) -> int:
        """Statement by statement outside a transaction; each one retried on lock timeout."""
        most_attempts = 1
        for done, statement in enumerate(statements, start=1):
            most_attempts = max(
                most_attempts,
                self._autocommit_statement(script, statement, version, name, direction, failure),
            )
            self.ledger.set_progress(version, done)
        self.conn.execute("RESET lock_timeout")
        self.conn.execute("RESET statement_timeout")
        return most_attempts

    def _autocommit_statement(
        self,
        script: Script,
        statement: Statement,
        version: int,
        name: str,
        direction: str,
        failure: type[MigrateSafeError],
    ) -> int:
        relations = resolve_relations(self.conn, touched_relations(statement.sql))
        for attempt in range(1, self.policy.lock_retries + 2):
            lock_timeout = self.policy.lock_timeout_for(attempt, script.directives.lock_timeout)
            self._wait_until_quiet(relations, lock_timeout)
            self._set_timeouts(script, lock_timeout, local=False)
            try:
                self._execute(script, statement)
                return attempt
            except StatementFailed as failed:
                self._drop_invalid_index(statement)
                self._after_failure(failed, version, name, direction, attempt, failure)
        raise AssertionError("unreachable: _after_failure raises on the last attempt")

    def _after_failure(
        self,
        failed: StatementFailed,
        version: int,
        name: str,
        direction: str,
        attempt: int,
        failure: type[MigrateSafeError],
    ) -> None:
        """Record the attempt; sleep and return to retry a lock timeout, raise otherwise."""
        info = failed.as_dict()
        retry = failed.lock_timeout and attempt <= self.policy.lock_retries
        outcome = "retried" if retry else "failed"
        self._history(
            version,
            name,
            direction,
            outcome,
            attempt=attempt,
            sqlstate=failed.error.sqlstate,
            error=info["message"],
        )
        if retry:
            pause = self.policy.backoff_for(attempt)
            self.report.event("lock_timeout_retry", version=version, attempt=attempt, **info)
            self.report.progress(
                f"    lock not available for {version}_{name} (attempt {attempt}); "
                f"retrying in {pause:.2f}s with a longer lock_timeout"
            )
            time.sleep(pause)
            return
        self.report.event(f"{direction}_failed", version=version, attempt=attempt, **info)
        gave_up = f" after {attempt} attempts" if failed.lock_timeout else ""
        raise failure(f"{version}_{name} failed{gave_up}: {failed.describe()}", details=info)

    def _execute(self, script: Script, statement: Statement) -> None:
        try:
            self.conn.execute(statement.sql.encode())
        except psycopg.Error as error:
            raise StatementFailed(script, statement, error) from None

    def _set_timeouts(self, script: Script, lock_timeout: float, *, local: bool) -> None:
        statement_timeout = script.directives.statement_timeout
        if statement_timeout is None:
            statement_timeout = self.policy.statement_timeout
        self.conn.execute(
            "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
            [format_duration(lock_timeout), local, format_duration(statement_timeout), local],
        )

    def _wait_until_quiet(self, relation_oids: list[int], lock_timeout: float) -> None:
        """Wait (bounded) while a transaction older than lock_timeout holds the tables."""
        deadline = time.monotonic() + self.policy.quiet_wait
        announced = False
        while relation_oids:
            blockers = long_lock_holders(self.conn, relation_oids, lock_timeout)
            if not blockers or time.monotonic() >= deadline:
                return
            if not announced:
                first = blockers[0]
                self.report.event(
                    "waiting_for_lock_holders", blockers=[b.__dict__ for b in blockers]
                )
                self.report.progress(
                    f"    waiting: pid {first.pid} ({first.application_name or 'no name'}) holds "
                    f"{first.mode} on {first.relation} in a {first.transaction_seconds:.0f}s "
                    "transaction"
                )
                announced = True
            time.sleep(0.2)

    def _drop_invalid_index(self, statement: Statement) -> None:
        """A concurrent index build that failed leaves an INVALID index; drop it to retry."""
        index = concurrent_index(statement.sql)
        if index is None:
            return
        row = self.conn.execute(
            "SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
            [str(index)],
        ).fetchone()
        if row and row[0]:
            self.conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(*(p for p in (index.schema, index.name) if p))
                )
            )

    def _history(
        self,
        version: int,
        name: str,
        direction: str,
        outcome: str,
        *,
        attempt: int = 1,
        sqlstate: str | None = None,
        error: str | None = None,
        ms: int | None = None,
    ) -> None:
        """History rows of failed attempts are written after the rollback, in autocommit."""
        self.ledger.append_history(
            HistoryEntry(
                run_id=self.report.run_id,
                direction=direction,
                outcome=outcome,
                started_at=self.report.started_at,
                version=version,
                name=name,
                attempt=attempt,
                sqlstate=sqlstate,
                error=error,
                duration_ms=ms,
            )
        )

    # --- rehearsal -----------------------------------------------------------------------

    def rehearse(self, migrations: list[Migration]) -> list[dict[str, Any]]:
        """Run the pending transactional migrations in one transaction, record each
        statement's locks, then roll everything back."""
        results: list[dict[str, Any]] = []
        with self._rolled_back():
            for migration in migrations:
                entry: dict[str, Any] = {"version": migration.version, "name": migration.name}
                results.append(entry)
                if migration.up.directives.no_transaction:
                    entry["skipped"] = "no-transaction migration: cannot run inside a rehearsal"
                    continue
                self._set_timeouts(migration.up, self.policy.lock_timeout, local=True)
                try:
                    entry["statements"] = self._rehearse_script(migration.up)
                except _RehearsalStopped as stopped:
                    entry["statements"] = stopped.done
                    entry["error"] = stopped.failed.as_dict()
                    break
        return results

    def _rehearse_script(self, script: Script) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        before = own_relation_locks(self.conn, self.ledger.schema)
        for statement in script_statements(script):
            started = time.monotonic()
            try:
                self._execute(script, statement)
            except StatementFailed as failed:
                raise _RehearsalStopped(done, failed) from None
            after = own_relation_locks(self.conn, self.ledger.schema)
            # Locks taken earlier in the rehearsal are not taken again, so also list what is
            # held on the relations this statement names: that is what it needs.
            named = touched_relations(statement.sql)
            needed = (after - before) | {lock for lock in after if lock.names(named)}
            done.append(
                {
                    "line": statement.line,
                    "sql": _shorten(statement.sql, 160),
                    "duration_ms": _millis(started),
                    "locks": [lock.__dict__ for lock in sorted(needed)],
                }
            )
            before = after
        return done

    @contextmanager
    def _rolled_back(self) -> Iterator[None]:
        with self.conn.transaction(force_rollback=True):
            yield


@dataclass
class _RehearsalStopped(Exception):
    done: list[dict[str, Any]]
    failed: StatementFailed
