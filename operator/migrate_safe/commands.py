"""Command handlers: load the source, open a session, take the lock, delegate to the engine.

Each handler fills `body`, the command's JSON report, as it goes: when a run fails midway
the report still shows what was done before the failure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrate_safe.config import Settings, describe_dsn
from migrate_safe.engine import Engine
from migrate_safe.errors import ConfigError, MigrationFailed
from migrate_safe.ledger import HistoryEntry, Ledger
from migrate_safe.lint import Finding, LintConfig, render, summary
from migrate_safe.localpg import LocalPostgres
from migrate_safe.locks import HeldLock, strongest
from migrate_safe.options import lint_config, phase_options
from migrate_safe.pipeline import (
    PhaseOptions,
    apply_phase,
    backup_phase,
    lint_downs,
    lint_pending,
    lint_rollback,
    outcome_recorded,
    postflight_phase,
    preflight_phase,
    record_fingerprint,
)
from migrate_safe.plan import LedgerState, RollbackStep, plan_hash
from migrate_safe.report import Reporter, utcnow
from migrate_safe.session import connect, locked_ledger
from migrate_safe.settings_file import load_settings_file
from migrate_safe.source import Migration, Script, Source, check_scripts, load_source

Args = argparse.Namespace
Body = dict[str, Any]


def load(settings: Settings, report: Reporter, *, missing_ok: bool = False) -> Source:
    if missing_ok and not settings.migrations_dir.exists():
        report.progress(
            f"note: {settings.migrations_dir} not found; using down SQL from the ledger"
        )
        return Source(settings.migrations_dir, [])
    source = load_source(settings.migrations_dir, allow_missing_down=settings.allow_missing_down)
    for warning in source.warnings:
        report.progress(f"warning: {warning}")
    return source


def describe(settings: Settings, body: Body) -> None:
    body["database"] = describe_dsn(settings.require_database_url())
    body["ledger_schema"] = settings.ledger_schema


def check_before_running(scripts: list[Script], report: Reporter, body: Body) -> None:
    """Every file of the run parses and leaves the transaction to the engine, or nothing runs."""
    notes = check_scripts(scripts)
    for note in notes:
        report.event("transaction_wrapper_dropped", note=note)
        report.progress(f"note: {note}")
    if notes:
        body["notes"] = notes


# --- apply / run / rehearsal --------------------------------------------------------------


@dataclass(frozen=True)
class Steps:
    """Which phases around apply a command runs."""

    preflight: bool = True
    enforce_preflight: bool = True  # False with --force: failures are reported, not fatal
    backup: bool = True
    postflight: bool = False
    dry_run: bool = False


def apply(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    steps = Steps(
        preflight=not args.skip_preflight and not args.dry_run,
        enforce_preflight=not args.force,
        backup=not args.no_backup and not args.dry_run,
        dry_run=args.dry_run,
    )
    run_pipeline(settings, report, body, target=args.to, steps=steps, options=phase_options(args))


def run(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    steps = Steps(enforce_preflight=not args.force, backup=not args.no_backup, postflight=True)
    run_pipeline(settings, report, body, target=args.to, steps=steps, options=phase_options(args))


def run_pipeline(
    settings: Settings, report: Reporter, body: Body, *, target: int | None, steps: Steps,
    options: PhaseOptions,
) -> None:  # fmt: skip
    source = load(settings, report)
    describe(settings, body)
    # The ledger is created by the apply phase, so a refused run leaves nothing behind.
    with locked_ledger(settings, report.command, create=False) as ledger:
        state = LedgerState(ledger.applied(), source)
        state.refuse_unsafe_apply()
        pending = state.to_apply(target)
        check_before_running([m.up for m in pending], report, body)
        body["target_version"] = pending[-1].version if pending else state.current_version
        body["plan_hash"] = plan_hash("up", pending)
        if options.expected_plan_hash and options.expected_plan_hash != body["plan_hash"]:
            raise MigrationFailed(
                f"the plan changed since it was approved: it is now {body['plan_hash']}, "
                f"approved {options.expected_plan_hash}; nothing was applied"
            )
        if steps.dry_run:
            findings = lint_pending(ledger, state, pending, options.lint)
            engine = Engine(ledger.conn, ledger, settings.policy, report)
            try:
                _rehearse(engine, pending, report, body)
            finally:
                body["plan"] = _published_plan(body, pending, findings)
            return
        if pending and steps.preflight:
            preflight_phase(
                ledger, state, pending, settings, options, report, body,
                enforce=steps.enforce_preflight,
            )  # fmt: skip
        if pending and steps.backup:
            backup_phase(ledger, state, settings, options, report, body)
        apply_phase(ledger, pending, source, settings, report, body)
        if steps.postflight:
            postflight_phase(ledger, source, target, options, report, body)


def _published_plan(body: Body, pending: list[Migration], findings: list[Finding]) -> Body:
    """What Plan mode publishes: the hash to approve, each migration with the strongest
    lock it took in the rehearsal, and the lint counts."""
    locks: dict[int, list[str]] = {}
    for entry in body.get("rehearsal", []):
        taken = [
            HeldLock(lock["relation"], lock["mode"])
            for statement in entry.get("statements", [])
            for lock in statement["locks"] + statement["already_held"]
        ]
        locks[entry["version"]] = [f"{lock.mode} {lock.relation}" for lock in strongest(set(taken))]
    return {
        "hash": body["plan_hash"],
        "direction": "up",
        "migrations": [
            {
                "version": m.version,
                "name": m.name,
                "noTransaction": m.up.directives.no_transaction,
                "locks": locks.get(m.version, []),
            }
            for m in pending
        ],
        "lint": summary(findings),
    }


def _rehearse(engine: Engine, pending: list[Migration], report: Reporter, body: Body) -> None:
    report.progress(f"rehearsal of {len(pending)} migration(s) in one transaction (rolled back)")
    results = engine.rehearse(pending)
    body["rehearsal"] = results
    for entry in results:
        label = f"{entry['version']}_{entry['name']}"
        if "skipped" in entry:
            report.result(f"  - {label}: skipped ({entry['skipped']})")
            continue
        if "not_rehearsed" in entry:
            report.result(f"  ? {label}: not rehearsed: {entry['not_rehearsed']}")
            continue
        report.result(f"  {'✗' if 'error' in entry else '✓'} {label}")
        for statement in entry.get("statements", []):
            locks = [f"{lock['mode']} on {lock['relation']}" for lock in statement["locks"]]
            locks += [
                f"(already holds {lock['mode']} on {lock['relation']})"
                for lock in statement["already_held"]
            ]
            report.result(f"      line {statement['line']}: {', '.join(locks) or 'no locks'}")
        if "error" in entry:
            error = entry["error"]
            raise MigrationFailed(
                f"rehearsal failed at {error['file']}:{error['line']}: {error['message']} "
                f"(SQLSTATE {error['sqlstate']}); nothing was changed",
                details=error,
            )
    beyond = [entry["version"] for entry in results if "not_rehearsed" in entry]
    passed = "rehearsal passed"
    if beyond:
        rehearsed = sum("statements" in entry and "not_rehearsed" not in entry for entry in results)
        passed += (
            f" for {rehearsed} migration(s); {len(beyond)} could not be rehearsed in one "
            f"transaction ({', '.join(map(str, beyond))}): apply runs each in its own"
        )
    report.result(
        f"{passed}; everything was rolled back "
        "(checked: the schema fingerprint and the ledger are as before)"
    )


# --- rollback ---------------------------------------------------------------------------


def rollback(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    lint = lint_config(args, load_settings_file(args.config))
    run_rollback(settings, report, body, args.to, args.steps, lint, enforce_lint=not args.force)


def run_rollback(
    settings: Settings,
    report: Reporter,
    body: Body,
    target: int | None,
    steps: int | None,
    lint: LintConfig,
    *,
    enforce_lint: bool = True,
) -> None:
    source = load(settings, report, missing_ok=True)
    describe(settings, body)
    with locked_ledger(settings, "rollback") as ledger:
        state = LedgerState(ledger.applied(), source)
        if state.dirty:
            state.refuse_unsafe_apply()
        plan = state.to_roll_back(target=target, steps=steps)
        check_before_running([step.down for step in plan], report, body)
        lint_rollback(ledger, plan, report, body, lint, enforce=enforce_lint)
        report.progress(f"rollback on {body['database']}: {len(plan)} version(s)")
        rolled_back = body.setdefault("rolled_back", [])
        engine = Engine(ledger.conn, ledger, settings.policy, report)
        with outcome_recorded(ledger, source, report, body, "rollback"):
            for step in plan:
                rolled_back.append(engine.rollback(step).__dict__)
        current = body["current_version"]
        report.progress(
            f"rolled back {len(rolled_back)}; current version {current or 'none (empty)'}"
        )


# --- status and plan ----------------------------------------------------------------------


def _read_state(settings: Settings, report: Reporter, purpose: str) -> LedgerState:
    source = load(settings, report)
    with connect(settings, purpose) as conn:
        return LedgerState(Ledger(conn, settings.ledger_schema).applied(), source)


def status(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    state = _read_state(settings, report, "status")
    describe(settings, body)
    body.update(state.status())
    if not args.json:
        _print_status(state, report)


def _print_status(state: LedgerState, report: Reporter) -> None:
    current = state.current_version
    report.result(f"current version  {current if current is not None else '(none)'}")
    report.result(f"pending          {', '.join(str(m.version) for m in state.pending) or 'none'}")
    report.result(
        f"dirty            {'YES: ' + str(state.dirty[0].version) if state.dirty else 'no'}"
    )
    report.result(f"{'VERSION':>14}  {'STATE':8}  {'APPLIED AT':20}  {'MS':>7}  NAME")
    applied = {row.version: row for row in state.applied}
    versions = sorted(applied.keys() | {m.version for m in state.source.migrations})
    names = {m.version: m.name for m in state.source.migrations}
    for version in versions:
        row = applied.get(version)
        when = row.applied_at.strftime("%Y-%m-%d %H:%M:%S") if row else ""
        ms = str(row.duration_ms) if row and row.duration_ms is not None else ""
        name = row.name if row else names[version]
        report.result(
            f"{version:>14}  {row.state if row else 'pending':8}  {when:20}  {ms:>7}  {name}"
        )
    for version in state.missing_from_source:
        report.result(f"drift: version {version} is applied but missing from the source")
    for mismatch in state.checksum_mismatches:
        report.result(f"drift: {mismatch.describe()}")


def plan(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    source = load(settings, report)
    describe(settings, body)
    with connect(settings, "plan") as conn:
        ledger = Ledger(conn, settings.ledger_schema)
        state = LedgerState(ledger.applied(), source)
        current = state.current_version
        backwards = args.steps is not None or (
            args.to is not None and current is not None and args.to < current
        )
        findings: list[Finding] = []
        lint = lint_config(args, load_settings_file(args.config))
        if backwards:
            steps = state.to_roll_back(target=args.to, steps=args.steps)
            body["migrations"] = [_planned_down(step) for step in steps]
            findings = lint_downs(ledger, steps, lint)
        else:
            state.refuse_unsafe_apply()
            pending = state.to_apply(args.to)
            body["migrations"] = [_planned_up(m) for m in pending]
            findings = lint_pending(ledger, state, pending, lint)
    body.update(direction="down" if backwards else "up", current_version=current)
    if not backwards:
        body["plan_hash"] = plan_hash("up", pending)
    body["lint"] = {"findings": [f.as_dict() for f in findings], "summary": summary(findings)}
    if not args.json:
        verb = "roll back" if backwards else "apply"
        report.result(
            f"plan: {verb} {len(body['migrations'])} migration(s) from {current or 'none'}"
        )
        for item in body["migrations"]:
            mode = "no-transaction" if item["no_transaction"] else "one transaction"
            touched = ", ".join(item["relations"]) or "-"
            report.result(f"  {item['version']}_{item['name']}  [{mode}]  touches: {touched}")
        if findings:
            report.result(render(findings, "text").rstrip("\n"))


def _planned_up(migration: Migration) -> dict[str, Any]:
    return {
        "version": migration.version,
        "name": migration.name,
        "file": migration.up.origin,
        "checksum": migration.up.checksum,
        "no_transaction": migration.up.directives.no_transaction,
        "relations": sorted(str(r) for r in migration.up.relations),
    }


def _planned_down(step: RollbackStep) -> dict[str, Any]:
    return {
        "version": step.row.version,
        "name": step.row.name,
        "file": step.down.origin,
        "checksum": step.down.checksum,
        "no_transaction": step.down.directives.no_transaction,
        "relations": sorted(str(r) for r in step.down.relations),
    }


# --- adoption and recovery ------------------------------------------------------------------


def _record(
    ledger: Ledger,
    report: Reporter,
    direction: str,
    outcome: str,
    version: int,
    name: str | None = None,
) -> None:
    ledger.append_history(
        HistoryEntry(report.run_id, direction, outcome, utcnow(), version=version, name=name)
    )
    report.event(f"{direction}_{outcome}", version=version)
    report.progress(f"  {direction}: version {version} {outcome}")


def baseline(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    source = load(settings, report)
    describe(settings, body)
    with locked_ledger(settings, "baseline") as ledger:
        if ledger.applied():
            raise ConfigError("baseline: the ledger already has versions; use force instead")
        version = args.baseline_version
        if args.from_golang_migrate:
            version = _golang_migrate_version(ledger.conn, args.from_golang_migrate)
        known = source.by_version()
        if version not in known:
            raise ConfigError(f"baseline --version {version}: no such migration in the source")
        with ledger.conn.transaction():
            for migration in (m for m in source.migrations if m.version <= version):
                ledger.upsert(migration, state="applied", run_id=report.run_id)
                _record(ledger, report, "baseline", "recorded", migration.version, migration.name)
        body["current_version"] = version
        body["fingerprint"] = record_fingerprint(ledger, report, "baseline", "succeeded")


def _golang_migrate_version(conn: psycopg.Connection[Any], table: str) -> int:
    parts = table.split(".")
    try:
        row = conn.execute(
            sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(sql.Identifier(*parts))
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        raise ConfigError(f"--from-golang-migrate: table {table} not found") from None
    if row is None:
        raise ConfigError(f"--from-golang-migrate: {table} is empty (nothing applied)")
    if row[1]:
        raise MigrationFailed(f"golang-migrate's {table} is dirty at {row[0]}; fix it first")
    return int(row[0])


def force(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    source = load(settings, report, missing_ok=True)
    describe(settings, body)
    version = args.force_version
    with locked_ledger(settings, "force") as ledger:
        rows = {row.version: row for row in ledger.applied()}
        migration = source.by_version().get(version)
        if version != 0 and version not in rows and migration is None:
            raise ConfigError(f"force --version {version}: not in the ledger nor the source")
        with ledger.conn.transaction():
            for row in sorted(rows.values(), key=lambda r: -r.version):
                if row.version > version:
                    ledger.delete(row.version)
                    _record(ledger, report, "force", "removed", row.version, row.name)
            if version in rows:
                if rows[version].dirty:
                    ledger.set_state(version, "applied")
                    _record(ledger, report, "force", "marked_applied", version, rows[version].name)
            elif migration is not None:
                ledger.upsert(migration, state="applied", run_id=report.run_id)
                _record(ledger, report, "force", "marked_applied", version, migration.name)
        body["current_version"] = version if version else None
        body["fingerprint"] = record_fingerprint(ledger, report, "force", "succeeded")


def repair(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    source = load(settings, report)
    describe(settings, body)
    with locked_ledger(settings, "repair") as ledger:
        state = LedgerState(ledger.applied(), source)
        known = source.by_version()
        with ledger.conn.transaction():
            for row in state.dirty:
                ledger.delete(row.version)
                _record(ledger, report, "repair", "removed_dirty", row.version, row.name)
            for mismatch in state.checksum_mismatches:
                migration = known[mismatch.version]
                ledger.realign(mismatch.version, migration.up.checksum, migration.down)
                _record(ledger, report, "repair", "realigned", mismatch.version, migration.name)
        body["removed_dirty"] = [row.version for row in state.dirty]
        body["realigned"] = [m.version for m in state.checksum_mismatches]
        body["fingerprint"] = record_fingerprint(ledger, report, "repair", "succeeded")


# --- demo -------------------------------------------------------------------------------------


def demo(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    """Start a throwaway PostgreSQL and walk the examples through a rehearsal, the full
    pipeline, a rollback and a re-apply, printing what a user would see."""
    if not settings.migrations_dir.is_dir():
        settings.migrations_dir = Path(__file__).resolve().parents[2] / "examples" / "migrations"
    report.progress("starting a throwaway PostgreSQL (initdb + pg_ctl on a loopback port)…")
    with LocalPostgres(keep=args.keep) as pg:
        settings.database_url = pg.url("postgres")
        settings.redact.add_secret(pg.password)
        options = PhaseOptions(backup_dir=pg.root / "backups")
        report.progress(
            f"PostgreSQL on 127.0.0.1:{pg.port}, migrations from {settings.migrations_dir}"
        )

        def pipeline(steps: Steps) -> Callable[[Body], None]:
            return lambda b: run_pipeline(
                settings, report, b, target=None, steps=steps, options=options
            )

        def rollback_two(b: Body) -> None:
            run_rollback(settings, report, b, None, 2, options.lint)

        walk: list[tuple[str, Callable[[Body], None]]] = [
            ("rehearsal (apply --dry-run)", pipeline(Steps(dry_run=True))),
            ("run: preflight, backup, apply, postflight", pipeline(Steps(postflight=True))),
            (
                "rollback --steps 2",
                lambda b: run_rollback(settings, report, b, None, 2, options.lint),
            ),
            ("apply again", pipeline(Steps())),
        ]
        for title, step in walk:
            report.result(f"\n== {title}")
            step(body.setdefault(title, {}))
        report.result("\n== status")
        status(argparse.Namespace(json=False), settings, report, body.setdefault("status", {}))
        _print_history(settings, report)
        if args.keep:
            report.result(f"\ncluster kept in {pg.root} (port {pg.port})")


def _print_history(settings: Settings, report: Reporter) -> None:
    report.result("\n== ledger history (migrate_safe.history)")
    with connect(settings, "demo") as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT id, version, direction, outcome, attempt FROM {}.history ORDER BY id"
            ).format(sql.Identifier(settings.ledger_schema))
        ).fetchall()
    for row in rows:
        report.result(f"  #{row[0]:<3} {row[1] or '':>4} {row[2]:5} {row[3]:10} attempt {row[4]}")


def wait(args: Args, settings: Settings, report: Reporter, body: Body) -> None:
    """For an application's init container: block until the ledger reaches a version.
    Needs only a database login, no Kubernetes RBAC."""
    describe(settings, body)
    deadline = time.monotonic() + args.timeout
    announced = False
    while True:
        reached = _ledger_reached(settings, args.wait_version)
        if reached is not None:
            body["current_version"] = reached
            report.progress(f"ledger at {reached}, at or past {args.wait_version}")
            return
        if time.monotonic() >= deadline:
            raise MigrationFailed(
                f"ledger did not reach version {args.wait_version} within {args.timeout:g}s"
            )
        if not announced:
            report.progress(f"waiting for the ledger to reach version {args.wait_version}…")
            announced = True
        time.sleep(args.interval)


def _ledger_reached(settings: Settings, version: int) -> int | None:
    """The current version once it is at least `version` with nothing dirty, else None.
    An unreachable database counts as not yet: the application waits, it does not crash."""
    try:
        with connect(settings, "wait") as conn:
            rows = Ledger(conn, settings.ledger_schema).applied()
    except ConfigError:
        return None
    if not rows or any(row.dirty for row in rows) or rows[-1].version < version:
        return None
    return rows[-1].version
