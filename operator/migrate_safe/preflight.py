"""Preflight: is the database ready for DDL right now? Named checks, each pass/warn/fail with
the evidence a human needs to act (pids, application names, durations, relations).

The check no other tool has: sessions holding or waiting for locks on the very relations the
pending migrations touch (found by parsing their SQL). A long transaction on an unrelated
table only warns; the same on a touched table fails, because the ALTER would queue behind it
and every query on that table would queue behind the ALTER.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from migrate_safe.catalog import application_schema
from migrate_safe.config import Redactor
from migrate_safe.errors import ConfigError
from migrate_safe.fingerprint import major_of, other_major, schema_hash
from migrate_safe.health import invalid_indexes, unvalidated_constraints
from migrate_safe.ledger import Ledger
from migrate_safe.lint import Finding, Severity
from migrate_safe.locks import resolve_relations
from migrate_safe.outcome import FAIL, PASS, WARN, Check, Evidence
from migrate_safe.plan import LedgerState
from migrate_safe.scanner import Migration
from migrate_safe.session import local_timeouts
from migrate_safe.statements import Relation

# What a problem found by each check counts as, unless configured otherwise.
DEFAULT_SEVERITY: dict[str, str] = {
    "ServerVersion": FAIL,
    "LedgerDirty": FAIL,
    "ChecksumDrift": FAIL,
    "MissingFromSource": WARN,
    "Pending": PASS,  # informational
    "LongTransactions": WARN,
    "IdleInTransaction": WARN,
    "BlockingLocks": FAIL,
    "LongTransactionOnTouchedTable": FAIL,
    "DatabaseSize": PASS,  # informational
    "ReplicationLag": WARN,
    "InvalidIndexes": WARN,
    "UnvalidatedConstraints": WARN,
    "SchemaDrift": WARN,
    "Lint": FAIL,
}
# The oldest major the version matrix tests (docs/compatibility.md).
OLDEST_SUPPORTED = 130000
# What gets a run past the Lint check without touching the files or the settings.
LINT_OVERRIDE_FLAGS = "`--warn-on Lint`, or for apply and run `--force`"
CATALOG_LOCK_TIMEOUT = 2.0  # seconds


@dataclass(frozen=True)
class PreflightConfig:
    long_transaction_seconds: float = 30.0
    idle_in_transaction_seconds: float = 10.0
    blocked_seconds: float = 1.0
    replication_lag_seconds: float = 30.0
    severity: dict[str, str] = field(default_factory=dict)

    def severity_of(self, check: str) -> str:
        return self.severity.get(check, DEFAULT_SEVERITY[check])

    @staticmethod
    def validate_names(names: list[str], what: str) -> None:
        unknown = sorted(set(names) - DEFAULT_SEVERITY.keys())
        if unknown:
            known = ", ".join(sorted(DEFAULT_SEVERITY))
            raise ConfigError(f"{what}: unknown check(s) {', '.join(unknown)} (known: {known})")


_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


def query_prefix(query: str | None, redact: Redactor, limit: int = 60) -> str:
    """A short prefix of another session's query, with literals blanked out: enough to
    recognise the statement, never the data in it."""
    flat = " ".join(_LITERAL.sub("?", query or "").split())
    return redact(flat if len(flat) <= limit else flat[: limit - 1] + "…")


class Preflight:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        ledger: Ledger,
        state: LedgerState,
        pending: list[Migration],
        config: PreflightConfig,
        redact: Redactor,
        findings: list[Finding],
        target: int | None = None,
    ) -> None:
        self.target = target
        self.conn = conn
        self.ledger = ledger
        self.state = state
        self.pending = pending
        self.config = config
        self.redact = redact
        self.findings = findings
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        checks = [
            ("ServerVersion", self._server_version),
            ("LedgerDirty", self._ledger),
            ("Pending", self._pending),
            ("LongTransactions", self._long_transactions),
            ("IdleInTransaction", self._idle_in_transaction),
            ("BlockingLocks", self._blocking_locks),
            ("LongTransactionOnTouchedTable", self._touched_relations),
            ("DatabaseSize", self._sizes),
            ("ReplicationLag", self._replication),
            ("InvalidIndexes", self._existing_invalid_indexes),
            ("UnvalidatedConstraints", self._existing_unvalidated_constraints),
            ("SchemaDrift", self._schema_drift),
            ("Lint", self._lint),
        ]
        for name, check in checks:
            self._bounded(name, check)
        return self.checks

    def _bounded(self, name: str, check: Callable[[], None]) -> None:
        """Preflight must never queue: a catalog function that needs a lock another session
        holds gives up after CATALOG_LOCK_TIMEOUT and the check says so."""
        try:
            with local_timeouts(self.conn, lock_timeout=CATALOG_LOCK_TIMEOUT):
                check()
        except psycopg.errors.LockNotAvailable:
            summary = (
                f"could not read the catalog within {CATALOG_LOCK_TIMEOUT:g}s: another session "
                "holds a lock on a relation (see LongTransactionOnTouchedTable)"
            )
            self.checks.append(Check(name, WARN, summary))

    def _add(self, name: str, problem: bool, summary: str, evidence: Sequence[Evidence]) -> None:
        status = self.config.severity_of(name) if problem else PASS
        self.checks.append(Check(name, status, summary, list(evidence)))

    def _rows(
        self, query: str | sql.Composed, params: Sequence[object] = ()
    ) -> list[dict[str, Any]]:
        """The rows of a catalog query, by column name."""
        with self.conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(query, params).fetchall()

    # --- the checks -----------------------------------------------------------------------

    def _server_version(self) -> None:
        # A standby is read-only: DDL would fail after the backup and the waiting.
        (row,) = self._rows("SELECT version(), pg_is_in_recovery() AS in_recovery")
        version = self.conn.info.server_version
        in_recovery = bool(row["in_recovery"])
        too_old = version < OLDEST_SUPPORTED
        summary = str(row["version"]).split(" on ")[0]
        if in_recovery:
            summary += "; connected to a standby (read-only): point at the primary"
        elif too_old:
            summary += "; older than PostgreSQL 13, the oldest migrate-safe supports"
        self._add("ServerVersion", in_recovery or too_old, summary, [{"server_version": version}])

    def _ledger(self) -> None:
        dirty = self.state.dirty
        versions = ", ".join(str(row.version) for row in dirty)
        self._add(
            "LedgerDirty",
            bool(dirty),
            f"dirty version(s): {versions}; run force or repair" if dirty else "no dirty versions",
            [{"version": row.version, "name": row.name} for row in dirty],
        )
        mismatches = self.state.checksum_mismatches
        self._add(
            "ChecksumDrift",
            bool(mismatches),
            "; ".join(m.describe() for m in mismatches) or "applied files unchanged",
            [asdict(m) for m in mismatches],
        )
        missing = self.state.missing_from_source
        listed = ", ".join(map(str, missing))
        self._add(
            "MissingFromSource",
            bool(missing),
            f"applied but not in the source: {listed}"
            if missing
            else "every applied version is in the source",
            [{"version": v} for v in missing],
        )

    def _pending(self) -> None:
        versions = [m.version for m in self.pending]
        summary = f"{len(versions)} pending: {', '.join(map(str, versions))}" if versions else ""
        self.checks.append(Check("Pending", PASS, summary or "nothing to apply", []))
        if self.target is not None:
            self._target_version(self.target)

    def _target_version(self, target: int) -> None:
        """A target the source does not have can neither be applied up to nor rolled back to:
        say so before any Job runs, rather than after a failed apply."""
        known = set(self.state.source.by_version()) | self.state.applied_versions
        exists = target == 0 or target in known
        latest = self.state.source.latest_version
        summary = (
            f"version {target} exists"
            if exists
            else f"version {target} is neither in the source (latest "
            f"{latest if latest is not None else 'none'}) nor in the ledger"
        )
        self.checks.append(Check("TargetVersion", PASS if exists else FAIL, summary, []))

    def _long_transactions(self) -> None:
        # Old transactions hold back vacuum and may hold locks a migration needs.
        rows = self._rows(
            "SELECT pid, coalesce(application_name, '') AS application_name,"
            " coalesce(usename::text, '') AS user, state,"
            " extract(epoch FROM clock_timestamp() - xact_start)::float8 AS transaction_seconds,"
            " query"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            " AND xact_start < clock_timestamp() - make_interval(secs => %s)"
            " ORDER BY xact_start",
            [self.config.long_transaction_seconds],
        )
        evidence = [
            {
                **row,
                "transaction_seconds": round(row["transaction_seconds"], 1),
                "query": query_prefix(row["query"], self.redact),
            }
            for row in rows
        ]
        limit = self.config.long_transaction_seconds
        self._add(
            "LongTransactions",
            bool(rows),
            f"{len(rows)} transaction(s) older than {limit:g}s: " + _sessions(evidence)
            if rows
            else f"no transaction older than {limit:g}s",
            evidence,
        )

    def _idle_in_transaction(self) -> None:
        # Idle-in-transaction sessions keep their locks and have no query to cancel.
        rows = self._rows(
            "SELECT pid, coalesce(application_name, '') AS application_name,"
            " extract(epoch FROM clock_timestamp() - state_change)::float8 AS idle_seconds"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            " AND state_change < clock_timestamp() - make_interval(secs => %s)",
            [self.config.idle_in_transaction_seconds],
        )
        evidence = [{**row, "idle_seconds": round(row["idle_seconds"], 1)} for row in rows]
        self._add(
            "IdleInTransaction",
            bool(rows),
            f"{len(rows)} session(s) idle in transaction: " + _sessions(evidence)
            if rows
            else "no session idle in transaction",
            evidence,
        )

    def _blocking_locks(self) -> None:
        # pg_blocking_pids sees relation-level waits too (the DDL lock queue), unlike
        # joins on transactionid alone.
        rows = self._rows(
            "SELECT a.pid AS waiting_pid,"
            " coalesce(a.application_name, '') AS waiting_application_name,"
            " extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS waiting_seconds,"
            " b.pid AS blocking_pid,"
            " coalesce(b.application_name, '') AS blocking_application_name,"
            " b.state AS blocking_state, b.query AS blocking_query"
            " FROM pg_stat_activity a"
            " CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)"
            " JOIN pg_stat_activity b ON b.pid = blocker.pid"
            " WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"
            " AND a.query_start < clock_timestamp() - make_interval(secs => %s)",
            [self.config.blocked_seconds],
        )
        evidence = [
            {
                **row,
                "waiting_seconds": round(row["waiting_seconds"], 1),
                "blocking_query": query_prefix(row["blocking_query"], self.redact),
            }
            for row in rows
        ]
        waits = "; ".join(
            f"pid {e['waiting_pid']} waits {e['waiting_seconds']}s for pid {e['blocking_pid']}"
            f" ({e['blocking_application_name'] or 'no name'})"
            for e in evidence
        )
        self._add("BlockingLocks", bool(rows), waits or "no session is waiting on a lock", evidence)

    def touched(self) -> set[Relation]:
        found: set[Relation] = set()
        for migration in self.pending:
            found |= migration.up.relations
        return found

    def _touched_relations(self) -> None:
        oids = resolve_relations(self.conn, self.touched())
        rows = self._rows(
            "SELECT l.pid, coalesce(a.application_name, '') AS application_name,"
            " l.relation::regclass::text AS relation, l.mode, l.granted,"
            " extract(epoch FROM clock_timestamp() - a.xact_start)::float8"
            " AS transaction_seconds, a.query"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.relation = ANY(%s::oid[]) AND l.pid <> pg_backend_pid()"
            " AND ((l.granted AND a.xact_start < clock_timestamp() - make_interval(secs => %s))"
            " OR (NOT l.granted AND a.query_start < clock_timestamp() - make_interval(secs => %s)))"
            " ORDER BY a.xact_start",
            [oids, self.config.long_transaction_seconds, self.config.blocked_seconds],
        )
        evidence = [
            {
                **row,
                "transaction_seconds": round(row["transaction_seconds"] or 0.0, 1),
                "query": query_prefix(row["query"], self.redact),
            }
            for row in rows
        ]
        names = ", ".join(sorted(str(r) for r in self.touched())) or "none"
        holders = "; ".join(
            f"pid {e['pid']} ({e['application_name'] or 'no name'}) "
            f"{'holds' if e['granted'] else 'waits for'} {e['mode']} on {e['relation']} "
            f"in a {e['transaction_seconds']}s transaction"
            for e in evidence
        )
        self._add(
            "LongTransactionOnTouchedTable",
            bool(rows),
            holders or f"no long transaction on the touched relations ({names})",
            evidence,
        )

    def _sizes(self) -> None:
        # Rewrites need up to twice a table's size in free disk, and their WAL reaches standbys.
        # Sizes come from relpages (as of the last VACUUM/ANALYZE): the size functions would
        # lock each table, and preflight must not queue behind anyone.
        (database,) = self._rows("SELECT pg_database_size(current_database()) AS database_bytes")
        schemas = self._rows(
            sql.SQL(
                "SELECT n.nspname AS schema,"
                " sum(c.relpages)::bigint * current_setting('block_size')::bigint"
                " AS bytes_estimate"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'm', 'p', 'i') AND {application}"
                " GROUP BY 1 ORDER BY 2 DESC"
            ).format(application=application_schema())
        )
        oids = resolve_relations(self.conn, self.touched())
        tables = self._rows(
            "SELECT c.oid::regclass::text AS table, (c.relpages + coalesce(t.relpages, 0)"
            " + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i"
            " ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), 0))::bigint"
            " * current_setting('block_size')::bigint AS bytes_estimate,"
            " c.reltuples::bigint AS rows_estimate"
            " FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid"
            " WHERE c.oid = ANY(%s::oid[]) AND c.relkind IN ('r', 'p', 'm')",
            [oids],
        )
        total = int(database["database_bytes"])
        evidence: list[Evidence] = [database, *schemas, *tables]
        self.checks.append(Check("DatabaseSize", PASS, f"database {_bytes(total)}", evidence))

    def _replication(self) -> None:
        # Large rewrites produce WAL; lagging standbys fall further behind.
        rows = self._rows(
            "SELECT application_name AS standby, client_addr::text AS address, state,"
            " extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes"
            " FROM pg_stat_replication"
        )
        limit = self.config.replication_lag_seconds
        lagging = [row for row in rows if (row["replay_lag_seconds"] or 0) > limit]
        if not rows:
            summary = "no standbys"
        else:
            summary = f"{len(rows)} standby(s), {len(lagging)} lagging more than {limit:g}s"
        self._add("ReplicationLag", bool(lagging), summary, rows)

    def _existing_invalid_indexes(self) -> None:
        found = invalid_indexes(self.conn)
        names = ", ".join(index.index for index in found)
        self._add(
            "InvalidIndexes",
            bool(found),
            f"invalid indexes (a failed concurrent build?): {names}"
            if found
            else "no invalid indexes",
            [asdict(index) for index in found],
        )

    def _existing_unvalidated_constraints(self) -> None:
        found = unvalidated_constraints(self.conn)
        names = ", ".join(f"{u.table}.{u.constraint}" for u in found)
        self._add(
            "UnvalidatedConstraints",
            bool(found),
            f"NOT VALID constraints: {names}" if found else "every constraint is validated",
            [asdict(u) for u in found],
        )

    def _schema_drift(self) -> None:
        recorded = self.ledger.last_fingerprint() if self.ledger.exists() else None
        if recorded is None:
            self.checks.append(Check("SchemaDrift", PASS, "no fingerprint recorded yet", []))
            return
        now = schema_hash(self.conn, self.ledger.schema)
        expected, run_id = recorded
        evidence = [{"fingerprint": now, "recorded": expected, "recorded_by_run": run_id}]
        then = other_major(now, expected)
        if then is not None:
            # A major upgrade (pg_upgrade, a new managed instance) is no drift, but it leaves
            # nothing to compare with until a run records the schema as this major prints it.
            summary = (
                f"the last fingerprint was recorded on PostgreSQL {then} (run {run_id}) and the "
                f"server is now PostgreSQL {major_of(now)}: fingerprints compare only within a "
                "major, so drift cannot be judged until the next run records one"
            )
            self.checks.append(Check("SchemaDrift", WARN, summary, evidence))
            return
        drifted = now != expected
        self._add(
            "SchemaDrift",
            drifted,
            f"schema changed outside migrate-safe since run {run_id} (fingerprint {now[:12]}, "
            f"recorded {expected[:12]}); see `migrate-safe fingerprint --json`"
            if drifted
            else "schema matches the fingerprint of the last run",
            evidence,
        )

    def _lint(self) -> None:
        """Dangerous statements in the pending files (suppressed findings are not counted;
        findings judged harmless on the real tables are info). A failure names the way out."""
        active = [f for f in self.findings if f.active and f.severity != Severity.INFO]
        errors = [f for f in active if f.severity == Severity.ERROR]
        evidence = [f.as_dict() for f in active]
        if errors:
            from migrate_safe.lint import refusal  # its module loads the linter: only to refuse

            summary = refusal(errors, flags=LINT_OVERRIDE_FLAGS)
            self._add("Lint", True, summary, evidence)
        elif active:
            summary = f"{len(active)} lint warning(s): " + ", ".join(
                f"{f.rule} {Path(f.file).name}:{f.line}" for f in active[:5]
            )
            self.checks.append(Check("Lint", WARN, summary, evidence))
        else:
            self.checks.append(Check("Lint", PASS, "no lint errors or warnings", evidence))


def _sessions(evidence: Sequence[Evidence]) -> str:
    return ", ".join(
        f"pid {e['pid']} ({e['application_name'] or 'no name'})" for e in evidence[:5]
    ) + (f" and {len(evidence) - 5} more" if len(evidence) > 5 else "")


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1024
    return f"{size:.1f} TiB"


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]
