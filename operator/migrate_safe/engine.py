"""Apply, rollback and rehearsal: transactions, timeouts, retries.

Each transactional migration runs in one transaction with `SET LOCAL lock_timeout` and
`statement_timeout`, together with its ledger row and history entry. A waiting ALTER is the
outage (every later query on the table queues behind it), so lock_timeout starts short and
escalates across bounded retries on SQLSTATE 55P03, and before each attempt the engine waits
(bounded) until no long transaction holds a lock on the tables the migration touches.
No-transaction migrations run statement by statement in autocommit and stay `dirty` in the
ledger until their last statement finished, so a crash is visible, never silent.

The engine owns the transaction: a file's own transaction control is refused before anything
runs (`Script.body`), and after every statement the engine checks that its transaction is still
the one it opened, so no statement can end it behind its back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus

from migrate_safe.config import ApplyPolicy
from migrate_safe.errors import MigrateSafeError, MigrationFailed, RollbackFailed
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint
from migrate_safe.ledger import HistoryEntry, Ledger, LedgerSnapshot
from migrate_safe.locks import (
    Blocker,
    Timeouts,
    own_relation_locks,
    relation_names,
    send_timeouts_and_long_lock_holders,
    strongest,
)
from migrate_safe.outcome import (
    MigrationRun,
    RehearsedMigration,
    RehearsedStatement,
    StatementError,
)
from migrate_safe.plan import RollbackStep
from migrate_safe.report import Reporter
from migrate_safe.scanner import Migration, Script
from migrate_safe.session import set_timeouts
from migrate_safe.statements import (
    Statement,
    concurrent_index,
    statement_relations,
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

    @property
    def line(self) -> int:
        """The file line PostgreSQL points at: its error position is within the statement."""
        position = self.error.diag.statement_position
        if not position or not position.isdigit():
            return self.statement.line
        return self.statement.line + self.statement.newlines_before(int(position) - 1)

    def report(self) -> StatementError:
        diag = self.error.diag
        return StatementError(
            file=self.script.origin,
            line=self.line,
            sqlstate=self.error.sqlstate,
            message=diag.message_primary or str(self.error).strip(),
            detail=diag.message_detail,
            hint=diag.message_hint,
            statement=_shorten(self.statement),
        )

    def describe(self) -> str:
        return self.report().describe()


def _shorten(statement: Statement, limit: int = 300) -> str:
    """The statement on one line, cut to `limit` characters; read from a head long enough
    to fill them, so a 20 MiB statement is not copied whole for its error message."""
    head_length = limit * 4
    while True:
        head = statement.head(head_length)
        flat = " ".join(head.split())
        if len(flat) > limit or len(head) < head_length:
            break
        head_length *= 4
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first_lines(text: str, limit: int) -> str:
    lines = text.splitlines()
    more = f"\n  … {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def _millis(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


class TransactionEscaped(MigrationFailed):
    """A statement ended or opened a transaction the engine did not: never expected once files
    are checked, so it stops the run loudly instead of going on without its guarantees."""

    def __init__(self, script: Script, statement: Statement, *, in_transaction: bool) -> None:
        where = f"{script.origin}:{statement.line}"
        if in_transaction:
            message = (
                f"{where} ended migrate-safe's transaction: statements of this file before it "
                "may have been committed without their ledger row; compare the schema with the "
                "file, then use `migrate-safe force` or `repair`"
            )
        else:
            message = (
                f"{where} opened a transaction block in a no-transaction migration; it was "
                "rolled back and the migration stays dirty"
            )
        details: dict[str, object] = {"file": script.origin, "line": statement.line}
        super().__init__(message, details=details)


@dataclass(frozen=True)
class _Unit:
    """One script to run in one direction, and what it changes in the ledger."""

    version: int
    name: str
    direction: str  # "up" or "down"
    script: Script
    mark_dirty: Callable[[], None]  # no-transaction scripts: before the first statement
    # With the duration and the history row to write with it; inside the script's transaction.
    record_done: Callable[[int, HistoryEntry], None]
    failure: type[MigrateSafeError]

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


class Engine:
    def __init__(
        self, conn: psycopg.Connection[Any], ledger: Ledger, policy: ApplyPolicy, report: Reporter
    ) -> None:
        self.conn = conn
        self.ledger = ledger
        self.policy = policy
        self.report = report

    def apply(self, migration: Migration) -> MigrationRun:
        run_id = self.report.run_id
        return self._run(
            _Unit(
                migration.version,
                migration.name,
                "up",
                migration.up,
                mark_dirty=lambda: self.ledger.upsert(migration, state="dirty", run_id=run_id),
                record_done=lambda ms, entry: self.ledger.upsert(
                    migration, state="applied", run_id=run_id, duration_ms=ms, history=entry
                ),
                failure=MigrationFailed,
            )
        )

    def rollback(self, step: RollbackStep) -> MigrationRun:
        version = step.row.version
        return self._run(
            _Unit(
                version,
                step.row.name,
                "down",
                step.down,
                mark_dirty=lambda: self.ledger.set_state(version, "dirty"),
                record_done=lambda _ms, entry: self.ledger.delete(version, history=entry),
                failure=RollbackFailed,
            )
        )

    def _run(self, unit: _Unit) -> MigrationRun:
        self.report.event(f"{unit.direction}_started", version=unit.version, name=unit.name)
        started = time.monotonic()
        try:
            if unit.script.directives.no_transaction:
                attempts = self._run_autocommit(unit)
            else:
                attempts = self._run_in_transaction(unit)
        except KeyboardInterrupt:  # SIGINT/SIGTERM: the history keeps the evidence
            self._history(unit, "interrupted")
            self.report.event(f"{unit.direction}_interrupted", version=unit.version)
            raise
        outcome = MigrationRun(unit.version, unit.name, _millis(started), attempts)
        self.report.event(f"{unit.direction}_succeeded", **outcome.to_json())
        symbol = "✓" if unit.direction == "up" else "↶"
        retries = f" after {attempts} attempts" if attempts > 1 else ""
        self.report.progress(f"  {symbol} {unit.label}  {outcome.duration_ms} ms{retries}")
        return outcome

    # --- the two ways of running a script ---------------------------------------------------

    def _run_in_transaction(self, unit: _Unit) -> int:
        """The whole script plus its ledger change and history row, atomically, with retries.

        Round trips: one opens the transaction (BEGIN, the timeouts and the quiet-wait probe
        together), one per statement, one writes the ledger and history rows and commits."""
        statements = unit.script.body.statements
        names = relation_names(unit.script.relations)
        for attempt in range(1, self.policy.lock_retries + 2):
            lock_timeout = self.policy.lock_timeout_for(
                attempt, unit.script.directives.lock_timeout
            )
            timeouts = (lock_timeout, self._statement_timeout(unit.script))
            try:
                with self._transaction_opened():
                    self._wait_until_quiet(names, timeouts, begin=True)
                    started = time.monotonic()
                    for statement in statements:
                        self._execute(unit.script, statement, in_transaction=True)
                    with _pipelined(self.conn):
                        done = self._entry(unit, "succeeded", attempt=attempt)
                        unit.record_done(_millis(started), done)
                        self.conn.execute("COMMIT")
                return attempt
            except StatementFailed as failed:
                self._after_failure(failed, unit, attempt)
        raise AssertionError("unreachable: _after_failure raises on the last attempt")

    @contextmanager
    def _transaction_opened(self) -> Iterator[None]:
        """Roll back the transaction `_wait_until_quiet` opens in the block when anything goes
        wrong (an error, a signal); the block commits it on success."""
        try:
            yield
        finally:
            if self.conn.info.transaction_status != TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")

    def _run_autocommit(self, unit: _Unit) -> int:
        """Statement by statement outside a transaction, the ledger row dirty until the end."""
        statements = unit.script.body.statements
        started = time.monotonic()
        with self._committed_in_one_round_trip():
            unit.mark_dirty()
            self._history(unit, "started")
        most_attempts = 1
        for done, statement in enumerate(statements, start=1):
            most_attempts = max(most_attempts, self._autocommit_statement(unit, statement))
            self.ledger.set_progress(unit.version, done)
        with self._committed_in_one_round_trip():
            self.conn.execute("RESET lock_timeout")
            self.conn.execute("RESET statement_timeout")
            unit.record_done(
                _millis(started), self._entry(unit, "succeeded", attempt=most_attempts)
            )
        return most_attempts

    @contextmanager
    def _committed_in_one_round_trip(self) -> Iterator[None]:
        """BEGIN, the block's queries and COMMIT sent together; rolled back on any error."""
        with self._transaction_opened(), _pipelined(self.conn):
            self.conn.execute("BEGIN")
            yield
            self.conn.execute("COMMIT")

    def _autocommit_statement(self, unit: _Unit, statement: Statement) -> int:
        names = relation_names(statement_relations(statement.sql))
        for attempt in range(1, self.policy.lock_retries + 2):
            lock_timeout = self.policy.lock_timeout_for(
                attempt, unit.script.directives.lock_timeout
            )
            timeouts = (lock_timeout, self._statement_timeout(unit.script))
            self._wait_until_quiet(names, timeouts, begin=False)
            try:
                self._execute(unit.script, statement, in_transaction=False)
                return attempt
            except StatementFailed as failed:
                self._drop_invalid_index(statement)
                self._after_failure(failed, unit, attempt)
        raise AssertionError("unreachable: _after_failure raises on the last attempt")

    def _after_failure(self, failed: StatementFailed, unit: _Unit, attempt: int) -> None:
        """Record the attempt; sleep and return to retry a lock timeout, raise otherwise."""
        error = failed.report()
        info = error.to_json()
        retry = failed.lock_timeout and attempt <= self.policy.lock_retries
        self._history(
            unit,
            "retried" if retry else "failed",
            attempt=attempt,
            sqlstate=error.sqlstate,
            error=error.message,
        )
        if retry:
            pause = self.policy.backoff_for(attempt)
            self.report.event("lock_timeout_retry", version=unit.version, attempt=attempt, **info)
            self.report.progress(
                f"    lock not available for {unit.label} (attempt {attempt}); "
                f"retrying in {pause:.2f}s with a longer lock_timeout"
            )
            time.sleep(pause)
            return
        self.report.event(f"{unit.direction}_failed", version=unit.version, attempt=attempt, **info)
        gave_up = f" after {attempt} attempts" if failed.lock_timeout else ""
        raise unit.failure(
            f"{unit.label} failed{gave_up}: {failed.describe()}",
            details=info,
            transient=failed.lock_timeout,  # the lock may be free next time; SQL stays wrong
        )

    def _execute(self, script: Script, statement: Statement, *, in_transaction: bool) -> None:
        # psycopg forgets every statement it prepared (and makes the server do the same) after
        # an ALTER or DROP passes through its statement cache: one in a file would leave the
        # engine's own constant queries parsed and planned afresh for every migration. A
        # migration's statements run once, so they stay out of that cache; none of our
        # prepared queries returns a table's columns (whose change would break a prepared
        # statement), and the server replans them when a migration changes what they read.
        threshold = self.conn.prepare_threshold
        self.conn.prepare_threshold = None
        try:
            self.conn.execute(statement.sql.encode())
        except psycopg.Error as error:
            raise StatementFailed(script, statement, error) from None
        finally:
            self.conn.prepare_threshold = threshold
        # psycopg tracks the server's transaction status without a round trip.
        status = self.conn.info.transaction_status
        if in_transaction and status != TransactionStatus.INTRANS:
            raise TransactionEscaped(script, statement, in_transaction=True)
        if not in_transaction and status != TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")
            raise TransactionEscaped(script, statement, in_transaction=False)

    def _statement_timeout(self, script: Script) -> float:
        """The file's directive, else the run's policy."""
        if script.directives.statement_timeout is not None:
            return script.directives.statement_timeout
        return self.policy.statement_timeout

    def _wait_until_quiet(
        self, names: list[str], timeouts: tuple[float, float], *, begin: bool
    ) -> None:
        """Set the timeouts (lock_timeout, statement_timeout) and wait (bounded) while a
        transaction older than that lock_timeout holds one of the named tables.

        With `begin`, return inside a new transaction whose timeouts they are (SET LOCAL);
        else they are the session's. BEGIN and the timeouts travel with the probe: one round
        trip in all when nothing holds the tables. Waiting happens outside any transaction."""
        deadline = time.monotonic() + self.policy.quiet_wait
        announced = False
        while True:
            blockers = self._probe(names, timeouts, begin=begin)
            if not blockers or time.monotonic() >= deadline:
                return
            if begin:
                self.conn.execute("ROLLBACK")
            if not announced:
                first = blockers[0]
                self.report.event(
                    "waiting_for_lock_holders", blockers=[asdict(b) for b in blockers]
                )
                self.report.progress(
                    f"    waiting: pid {first.pid} ({first.application_name or 'no name'}) holds "
                    f"{first.mode} on {first.relation} in a {first.transaction_seconds:.0f}s "
                    "transaction"
                )
                announced = True
            time.sleep(0.2)

    def _probe(
        self, names: list[str], timeouts: tuple[float, float], *, begin: bool
    ) -> list[Blocker]:
        """[BEGIN,] the timeouts and the long lock holders of `names` (none to look for when no
        name is touched), in one round trip."""
        lock_timeout, statement_timeout = timeouts
        with _pipelined(self.conn):
            if begin:
                self.conn.execute("BEGIN")
            if not names:
                set_timeouts(
                    self.conn,
                    lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout,
                    local=begin,
                )
                return []
            holders = send_timeouts_and_long_lock_holders(
                self.conn, names, Timeouts(lock_timeout, statement_timeout, local=begin)
            )
        return holders.fetch()

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
        unit: _Unit,
        outcome: str,
        *,
        attempt: int = 1,
        sqlstate: str | None = None,
        error: str | None = None,
    ) -> None:
        """History rows of failed attempts are written after the rollback, in autocommit."""
        self.ledger.append_history(
            self._entry(unit, outcome, attempt=attempt, sqlstate=sqlstate, error=error)
        )

    def _entry(
        self,
        unit: _Unit,
        outcome: str,
        *,
        attempt: int,
        sqlstate: str | None = None,
        error: str | None = None,
    ) -> HistoryEntry:
        return HistoryEntry(
            run_id=self.report.run_id,
            direction=unit.direction,
            outcome=outcome,
            started_at=self.report.started_at,
            version=unit.version,
            name=unit.name,
            attempt=attempt,
            sqlstate=sqlstate,
            error=error,
        )

    # --- rehearsal -----------------------------------------------------------------------

    def rehearse(self, migrations: list[Migration]) -> list[RehearsedMigration]:
        """Run the pending transactional migrations in one transaction, record each
        statement's locks, roll everything back, then prove that nothing persisted."""
        before = self._snapshot()
        results: list[RehearsedMigration] = []
        skipped: list[int] = []
        with self._rolled_back():
            for index, migration in enumerate(migrations):
                entry = RehearsedMigration(migration.version, migration.name)
                results.append(entry)
                if migration.up.directives.no_transaction:
                    entry.skipped = "no-transaction migration: cannot run inside a rehearsal"
                    skipped.append(migration.version)
                    continue
                set_timeouts(
                    self.conn,
                    lock_timeout=self.policy.lock_timeout,
                    statement_timeout=self._statement_timeout(migration.up),
                    local=True,
                )
                try:
                    entry.statements = self._rehearse_script(migration.up)
                except _RehearsalStopped as stopped:
                    entry.statements = stopped.done
                    reason = _beyond_a_rehearsal(stopped.failed, skipped)
                    if reason is None:
                        entry.error = stopped.failed.report()
                        break
                    entry.not_rehearsed = reason
                    later = f"not rehearsed: the rehearsal stopped at {migration.version}"
                    results += [
                        RehearsedMigration(m.version, m.name, not_rehearsed=later)
                        for m in migrations[index + 1 :]
                    ]
                    break
        self._prove_unchanged(before)
        return results

    def _snapshot(self) -> tuple[Fingerprint, LedgerSnapshot]:
        return fingerprint(self.conn, self.ledger.schema), self.ledger.snapshot()

    def _prove_unchanged(self, before: tuple[Fingerprint, LedgerSnapshot]) -> None:
        """A rehearsal that changed anything must say so: exit 2, naming what persisted."""
        schema_before, ledger_before = before
        schema_after = fingerprint(self.conn, self.ledger.schema)
        leftovers: list[str] = []
        if schema_after.hash != schema_before.hash:
            changed = describe_diff(diff(schema_before, schema_after), "before", "after")
            leftovers.append(f"the schema changed:\n{_first_lines(changed, 20)}")
        leftovers += ledger_before.changes(self.ledger.snapshot())
        if leftovers:
            self.report.event("rehearsal_left_changes", changes=leftovers)
            raise MigrationFailed(
                "the rehearsal did NOT leave the database as it was: " + "; ".join(leftovers),
                details={"changes": leftovers},
            )

    def _rehearse_script(self, script: Script) -> list[RehearsedStatement]:
        done: list[RehearsedStatement] = []
        before = own_relation_locks(self.conn, self.ledger.schema)
        for statement in script.body.statements:
            started = time.monotonic()
            try:
                self._execute(script, statement, in_transaction=True)
            except StatementFailed as failed:
                raise _RehearsalStopped(done, failed) from None
            after = own_relation_locks(self.conn, self.ledger.schema)
            taken = after - before
            # A lock taken earlier in the rehearsal is not taken again: name it separately,
            # so the report never claims a statement took a lock it did not ask for.
            named = statement_relations(statement.sql)
            held = strongest({lock for lock in before if lock.names(named)})
            held = [lock for lock in held if lock.relation not in {t.relation for t in taken}]
            done.append(
                RehearsedStatement(
                    line=statement.line,
                    sql=_shorten(statement, 160),
                    duration_ms=_millis(started),
                    locks=sorted(taken),
                    already_held=held,
                )
            )
            before = after
        return done

    @contextmanager
    def _rolled_back(self) -> Iterator[None]:
        with self.conn.transaction(force_rollback=True):
            yield


def _pipelined(conn: psycopg.Connection[Any]) -> AbstractContextManager[object]:
    """Queries sent together and answered in one round trip (psycopg's pipeline mode, where
    libpq supports it); an error stops the rest of the batch, as it would one by one."""
    return conn.pipeline() if psycopg.Pipeline.is_supported() else nullcontext()


def _beyond_a_rehearsal(failed: StatementFailed, skipped: list[int]) -> str | None:
    """Why an error met in a rehearsal says nothing about the real apply, or None when it is
    a real failure. One transaction cannot do two things apply does: commit a new enum value
    before a later file uses it, and run a no-transaction migration a later file builds on."""
    error = f"{failed.describe()}"
    if isinstance(failed.error, pg_errors.UnsafeNewEnumValueUsage):
        return (
            "uses an enum value that an earlier migration of this rehearsal adds; PostgreSQL "
            "lets it be used only once that migration has committed, as apply does and a "
            f"rehearsal cannot ({error})"
        )
    if skipped:
        versions = ", ".join(map(str, skipped))
        return (
            f"may depend on no-transaction migration(s) {versions}, which a rehearsal cannot "
            f"run; it failed with: {error}"
        )
    return None


@dataclass
class _RehearsalStopped(Exception):
    done: list[RehearsedStatement]
    failed: StatementFailed
