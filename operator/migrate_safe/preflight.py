"""Preflight: is the database ready for DDL right now? Named checks, each pass/warn/fail with
the evidence a human needs to act (pids, application names, durations, relations).

The check no other tool has: sessions holding or waiting for locks on the very relations the
pending migrations touch (found by parsing their SQL). A long transaction on an unrelated
table only warns; the same on a touched table fails, because the ALTER would queue behind it
and every query on that table would queue behind the ALTER.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from migrate_safe.config import Redactor
from migrate_safe.errors import ConfigError
from migrate_safe.fingerprint import fingerprint, major_of, other_major
from migrate_safe.health import invalid_indexes, unvalidated_constraints
from migrate_safe.ledger import Ledger
from migrate_safe.lint import Finding, Severity, refusal
from migrate_safe.locks import resolve_relations
from migrate_safe.plan import LedgerState
from migrate_safe.source import Migration
from migrate_safe.statements import Relation

PASS, WARN, FAIL = "pass", "warn", "fail"

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
CATALOG_LOCK_TIMEOUT = "2s"


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


@dataclass
class Check:
    name: str
    status: str
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "evidence": self.evidence,
        }


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
            with self.conn.transaction():
                self.conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)", [CATALOG_LOCK_TIMEOUT]
                )
                check()
        except psycopg.errors.LockNotAvailable:
            self.checks.append(
                Check(
                    name, WARN,
                    f"could not read the catalog within {CATALOG_LOCK_TIMEOUT}: another "
                    "session holds a lock on a relation (see LongTransactionOnTouchedTable)",
                )
            )  # fmt: skip

    def _add(self, name: str, problem: bool, summary: str, evidence: list[dict[str, Any]]) -> None:
        status = self.config.severity_of(name) if problem else PASS
        self.checks.append(Check(name, status, summary, evidence))

    # --- the checks -----------------------------------------------------------------------

    def _server_version(self) -> None:
        # A standby is read-only: DDL would fail after the backup and the waiting.
        row = self.conn.execute("SELECT version(), pg_is_in_recovery()").fetchone()
        version = self.conn.info.server_version
        in_recovery = bool(row and row[1])
        too_old = version < OLDEST_SUPPORTED
        summary = str(row[0]).split(" on ")[0] if row else "unknown"
        if in_recovery:
            summary += "; connected to a standby (read-only): point at the primary"
        elif too_old:
            summary += "; older than PostgreSQL 13, the oldest migrate-safe supports"
        self._add("ServerVersion", in_recovery or too_old, summary, [{"server_version": version}])

    def _ledger(self) -> None:
        dirty = [{"version": r.version, "name": r.name} for r in self.state.dirty]
        self._add(
            "LedgerDirty", bool(dirty),
            f"dirty version(s): {', '.join(str(d['version']) for d in dirty)}; run force or repair"
            if dirty else "no dirty versions",
            dirty,
        )  # fmt: skip
        mismatches = self.state.checksum_mismatches
        self._add(
            "ChecksumDrift", bool(mismatches),
            "; ".join(m.describe() for m in mismatches) or "applied files unchanged",
            [m.__dict__ for m in mismatches],
        )  # fmt: skip
        missing = self.state.missing_from_source
        self._add(
            "MissingFromSource", bool(missing),
            f"applied but not in the source: {', '.join(map(str, missing))}"
            if missing else "every applied version is in the source",
            [{"version": v} for v in missing],
        )  # fmt: skip

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
        rows = self.conn.execute(
            "SELECT pid, coalesce(application_name, ''), coalesce(usename::text, ''), state,"
            " extract(epoch FROM clock_timestamp() - xact_start)::float8, query"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            " AND xact_start < clock_timestamp() - make_interval(secs => %s)"
            " ORDER BY xact_start",
            [self.config.long_transaction_seconds],
        ).fetchall()
        evidence = [
            {
                "pid": r[0], "application_name": r[1], "user": r[2], "state": r[3],
                "transaction_seconds": round(float(r[4]), 1),
                "query": query_prefix(r[5], self.redact),
            }
            for r in rows
        ]  # fmt: skip
        limit = self.config.long_transaction_seconds
        self._add(
            "LongTransactions", bool(rows),
            f"{len(rows)} transaction(s) older than {limit:g}s: " + _sessions(evidence)
            if rows else f"no transaction older than {limit:g}s",
            evidence,
        )  # fmt: skip

    def _idle_in_transaction(self) -> None:
        # Idle-in-transaction sessions keep their locks and have no query to cancel.
        rows = self.conn.execute(
            "SELECT pid, coalesce(application_name, ''),"
            " extract(epoch FROM clock_timestamp() - state_change)::float8"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            " AND state_change < clock_timestamp() - make_interval(secs => %s)",
            [self.config.idle_in_transaction_seconds],
        ).fetchall()
        evidence = [
            {"pid": r[0], "application_name": r[1], "idle_seconds": round(float(r[2]), 1)}
            for r in rows
        ]
        self._add(
            "IdleInTransaction", bool(rows),
            f"{len(rows)} session(s) idle in transaction: " + _sessions(evidence)
            if rows else "no session idle in transaction",
            evidence,
        )  # fmt: skip

    def _blocking_locks(self) -> None:
        # pg_blocking_pids sees relation-level waits too (the DDL lock queue), unlike
        # joins on transactionid alone.
        rows = self.conn.execute(
            "SELECT a.pid, coalesce(a.application_name, ''),"
            " extract(epoch FROM clock_timestamp() - a.query_start)::float8,"
            " b.pid, coalesce(b.application_name, ''), b.state, b.query"
            " FROM pg_stat_activity a"
            " CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)"
            " JOIN pg_stat_activity b ON b.pid = blocker.pid"
            " WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"
            " AND a.query_start < clock_timestamp() - make_interval(secs => %s)",
            [self.config.blocked_seconds],
        ).fetchall()
        evidence = [
            {
                "waiting_pid": r[0], "waiting_application_name": r[1],
                "waiting_seconds": round(float(r[2]), 1), "blocking_pid": r[3],
                "blocking_application_name": r[4], "blocking_state": r[5],
                "blocking_query": query_prefix(r[6], self.redact),
            }
            for r in rows
        ]  # fmt: skip
        self._add(
            "BlockingLocks", bool(rows),
            "; ".join(
                f"pid {e['waiting_pid']} waits {e['waiting_seconds']}s for pid {e['blocking_pid']}"
                f" ({e['blocking_application_name'] or 'no name'})"
                for e in evidence
            ) or "no session is waiting on a lock",
            evidence,
        )  # fmt: skip

    def touched(self) -> set[Relation]:
        found: set[Relation] = set()
        for migration in self.pending:
            found |= migration.up.relations
        return found

    def _touched_relations(self) -> None:
        oids = resolve_relations(self.conn, self.touched())
        rows = self.conn.execute(
            "SELECT l.pid, coalesce(a.application_name, ''), l.relation::regclass::text, l.mode,"
            " l.granted, extract(epoch FROM clock_timestamp() - a.xact_start)::float8, a.query"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.relation = ANY(%s::oid[]) AND l.pid <> pg_backend_pid()"
            " AND ((l.granted AND a.xact_start < clock_timestamp() - make_interval(secs => %s))"
            " OR (NOT l.granted AND a.query_start < clock_timestamp() - make_interval(secs => %s)))"
            " ORDER BY a.xact_start",
            [oids, self.config.long_transaction_seconds, self.config.blocked_seconds],
        ).fetchall()
        evidence = [
            {
                "pid": r[0], "application_name": r[1], "relation": r[2], "mode": r[3],
                "granted": r[4], "transaction_seconds": round(float(r[5] or 0), 1),
                "query": query_prefix(r[6], self.redact),
            }
            for r in rows
        ]  # fmt: skip
        names = ", ".join(sorted(str(r) for r in self.touched())) or "none"
        self._add(
            "LongTransactionOnTouchedTable", bool(rows),
            "; ".join(
                f"pid {e['pid']} ({e['application_name'] or 'no name'}) "
                f"{'holds' if e['granted'] else 'waits for'} {e['mode']} on {e['relation']} "
                f"in a {e['transaction_seconds']}s transaction"
                for e in evidence
            ) or f"no long transaction on the touched relations ({names})",
            evidence,
        )  # fmt: skip

    def _sizes(self) -> None:
        # Rewrites need up to twice a table's size in free disk, and their WAL reaches standbys.
        # Sizes come from relpages (as of the last VACUUM/ANALYZE): the size functions would
        # lock each table, and preflight must not queue behind anyone.
        database = self.conn.execute("SELECT pg_database_size(current_database())").fetchone()
        schemas = self.conn.execute(
            "SELECT n.nspname, sum(c.relpages)::bigint * current_setting('block_size')::bigint"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'm', 'p', 'i') AND n.nspname NOT IN"
            " ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"
            " GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        oids = resolve_relations(self.conn, self.touched())
        tables = self.conn.execute(
            "SELECT c.oid::regclass::text, (c.relpages + coalesce(t.relpages, 0)"
            " + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i"
            " ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), 0))::bigint"
            " * current_setting('block_size')::bigint, c.reltuples::bigint"
            " FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid"
            " WHERE c.oid = ANY(%s::oid[]) AND c.relkind IN ('r', 'p', 'm')",
            [oids],
        ).fetchall()
        total = int(database[0]) if database else 0
        evidence: list[dict[str, Any]] = [{"database_bytes": total}]
        evidence += [{"schema": r[0], "bytes_estimate": int(r[1])} for r in schemas]
        evidence += [
            {"table": r[0], "bytes_estimate": int(r[1]), "rows_estimate": r[2]} for r in tables
        ]
        self.checks.append(Check("DatabaseSize", PASS, f"database {_bytes(total)}", evidence))

    def _replication(self) -> None:
        # Large rewrites produce WAL; lagging standbys fall further behind.
        rows = self.conn.execute(
            "SELECT application_name, client_addr::text, state,"
            " extract(epoch FROM replay_lag)::float8,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
            " FROM pg_stat_replication"
        ).fetchall()
        evidence = [
            {"standby": r[0], "address": r[1], "state": r[2], "replay_lag_seconds": r[3],
             "replay_lag_bytes": r[4]}
            for r in rows
        ]  # fmt: skip
        limit = self.config.replication_lag_seconds
        lagging = [e for e in evidence if (e["replay_lag_seconds"] or 0) > limit]
        if not rows:
            summary = "no standbys"
        else:
            summary = f"{len(rows)} standby(s), {len(lagging)} lagging more than {limit:g}s"
        self._add("ReplicationLag", bool(lagging), summary, evidence)

    def _existing_invalid_indexes(self) -> None:
        found = invalid_indexes(self.conn)
        self._add(
            "InvalidIndexes", bool(found),
            "invalid indexes (a failed concurrent build?): "
            + ", ".join(f["index"] for f in found) if found else "no invalid indexes",
            list(found),
        )  # fmt: skip

    def _existing_unvalidated_constraints(self) -> None:
        found = unvalidated_constraints(self.conn)
        self._add(
            "UnvalidatedConstraints", bool(found),
            "NOT VALID constraints: " + ", ".join(f"{u.table}.{u.constraint}" for u in found)
            if found else "every constraint is validated",
            [u.__dict__ for u in found],
        )  # fmt: skip

    def _schema_drift(self) -> None:
        recorded = self.ledger.last_fingerprint() if self.ledger.exists() else None
        if recorded is None:
            self.checks.append(Check("SchemaDrift", PASS, "no fingerprint recorded yet", []))
            return
        now = fingerprint(self.conn, self.ledger.schema).hash
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
            "SchemaDrift", drifted,
            f"schema changed outside migrate-safe since run {run_id} (fingerprint {now[:12]}, "
            f"recorded {expected[:12]}); see `migrate-safe fingerprint --json`"
            if drifted else "schema matches the fingerprint of the last run",
            evidence,
        )  # fmt: skip

    def _lint(self) -> None:
        """Dangerous statements in the pending files (suppressed findings are not counted;
        findings judged harmless on the real tables are info). A failure names the way out."""
        active = [f for f in self.findings if f.active and f.severity != Severity.INFO]
        errors = [f for f in active if f.severity == Severity.ERROR]
        evidence = [f.as_dict() for f in active]
        if errors:
            summary = refusal(errors, flags=LINT_OVERRIDE_FLAGS)
            self._add("Lint", True, summary, evidence)
        elif active:
            summary = f"{len(active)} lint warning(s): " + ", ".join(
                f"{f.rule} {Path(f.file).name}:{f.line}" for f in active[:5]
            )
            self.checks.append(Check("Lint", WARN, summary, evidence))
        else:
            self.checks.append(Check("Lint", PASS, "no lint errors or warnings", evidence))


def _sessions(evidence: list[dict[str, Any]]) -> str:
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
