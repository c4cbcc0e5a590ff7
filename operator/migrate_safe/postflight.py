"""Postflight: prove what the run left behind. No dirty rows, the ledger at its target, no
invalid indexes, unvalidated foreign keys with their orphan rows counted, and the schema
fingerprint recorded (and compared with an expected one when given)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import psycopg

from migrate_safe.fingerprint import Fingerprint, fingerprint, other_major
from migrate_safe.health import count_orphans, invalid_indexes, unvalidated_constraints
from migrate_safe.ledger import Ledger
from migrate_safe.outcome import FAIL, PASS, WARN, Check, Evidence
from migrate_safe.plan import LedgerState


def postflight(
    conn: psycopg.Connection[Any],
    ledger: Ledger,
    state: LedgerState,
    target: int | None,
    expected_fingerprint: str | None,
) -> tuple[list[Check], Fingerprint]:
    checks = [
        _no_dirty_rows(state),
        _ledger_at_target(state, target),
        *_unvalidated(conn),
        _invalid_indexes(conn),
    ]
    current = fingerprint(conn, ledger.schema)
    checks.append(_fingerprint(current, expected_fingerprint))
    return checks, current


def _no_dirty_rows(state: LedgerState) -> Check:
    dirty = [{"version": r.version, "name": r.name} for r in state.dirty]
    if dirty:
        versions = ", ".join(str(d["version"]) for d in dirty)
        return Check("NoDirtyRows", FAIL, f"dirty version(s) {versions}", dirty)
    return Check("NoDirtyRows", PASS, "no dirty versions")


def _ledger_at_target(state: LedgerState, target: int | None) -> Check:
    goal = target if target is not None else state.source.latest_version
    current = state.current_version
    evidence = [{"current_version": current, "target_version": goal}]
    if current != goal:
        return Check(
            "LedgerAtTarget",
            FAIL,
            f"ledger at {current or 'none'}, expected {goal or 'none'}",
            evidence,
        )
    return Check("LedgerAtTarget", PASS, f"ledger at {current or 'none'}", evidence)


def _unvalidated(conn: psycopg.Connection[Any]) -> list[Check]:
    """A NOT VALID foreign key with orphan rows will fail its VALIDATE; without orphans it
    only needs one. CHECKs (and NOT NULLs, NOT VALID from 18) only warn."""
    found = unvalidated_constraints(conn)
    keys = [u for u in found if u.kind == "foreign key"]
    counted: list[Evidence] = [
        {**asdict(u), "orphan_rows": count_orphans(conn, u.table, u.constraint)} for u in keys
    ]
    orphaned = [c for c in counted if c["orphan_rows"]]
    if orphaned:
        names = ", ".join(f"{c['table']}.{c['constraint']} ({c['orphan_rows']})" for c in orphaned)
        fk = Check(
            "UnvalidatedForeignKeys", FAIL, f"orphan rows behind NOT VALID: {names}", counted
        )
    elif counted:
        names = ", ".join(f"{c['table']}.{c['constraint']}" for c in counted)
        fk = Check(
            "UnvalidatedForeignKeys",
            WARN,
            f"NOT VALID, no orphans: {names}; VALIDATE them",
            counted,
        )
    else:
        fk = Check("UnvalidatedForeignKeys", PASS, "every foreign key is validated")
    checks = [u for u in found if u.kind in ("check", "not null")]
    names = ", ".join(f"{u.table}.{u.constraint}" for u in checks)
    check = Check(
        "UnvalidatedChecks",
        WARN if checks else PASS,
        f"NOT VALID checks: {names}" if checks else "every check constraint is validated",
        [asdict(u) for u in checks],
    )
    return [fk, check]


def _invalid_indexes(conn: psycopg.Connection[Any]) -> Check:
    found = invalid_indexes(conn)
    if found:
        names = ", ".join(index.index for index in found)
        evidence: list[Evidence] = [asdict(index) for index in found]
        return Check("InvalidIndexes", FAIL, f"invalid indexes: {names}", evidence)
    return Check("InvalidIndexes", PASS, "no invalid indexes")


def _fingerprint(current: Fingerprint, expected: str | None) -> Check:
    evidence = [{"fingerprint": current.hash, "expected": expected}]
    other = other_major(current.hash, expected) if expected else None
    if other is not None:
        # Not a different schema: a different description of it. Failing would roll back a
        # good migration; passing would claim a check that did not happen.
        return Check(
            "Fingerprint",
            WARN,
            f"the expected fingerprint was computed on PostgreSQL {other} and this server is "
            f"PostgreSQL {current.major}: they cannot be compared; compute the expected one "
            f"on a PostgreSQL {current.major} server (docs/compatibility.md)",
            evidence,
        )
    if expected and expected != current.hash:
        return Check(
            "Fingerprint",
            FAIL,
            f"schema fingerprint {current.hash} ≠ expected {expected}",
            evidence,
        )
    return Check("Fingerprint", PASS, f"schema fingerprint {current.hash}", evidence)
