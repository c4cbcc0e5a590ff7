"""The human-readable form of the typed results: what `report.result` prints (stdout, or stderr
under --json). The JSON form is `outcome.RunReport.to_json`."""

from __future__ import annotations

from migrate_safe.outcome import FAIL, WARN, CheckReport, PlanListing, RehearsedMigration
from migrate_safe.plan import LedgerState

SYMBOL = {"pass": "✓", "warn": "!", "fail": "✗"}


def checks(title: str, verdict: CheckReport) -> list[str]:
    """A verdict line, then each check with its symbol."""
    failed = sum(c.status == FAIL for c in verdict.checks)
    warned = sum(c.status == WARN for c in verdict.checks)
    lines = [f"{title} {'FAILED' if failed else 'passed'} ({failed} failed, {warned} warning(s))"]
    width = max((len(c.name) for c in verdict.checks), default=0)
    lines += [f"  {SYMBOL[c.status]} {c.name:<{width}}  {c.summary}" for c in verdict.checks]
    return lines


def rehearsed(entry: RehearsedMigration) -> list[str]:
    """One migration of a rehearsal: its outcome, then each statement with its locks."""
    if entry.skipped is not None:
        return [f"  - {entry.label}: skipped ({entry.skipped})"]
    if entry.not_rehearsed is not None:
        return [f"  ? {entry.label}: not rehearsed: {entry.not_rehearsed}"]
    lines = [f"  {'✗' if entry.error else '✓'} {entry.label}"]
    for statement in entry.statements or []:
        locks = [f"{lock.mode} on {lock.relation}" for lock in statement.locks]
        held = statement.already_held
        locks += [f"(already holds {lock.mode} on {lock.relation})" for lock in held]
        lines.append(f"      line {statement.line}: {', '.join(locks) or 'no locks'}")
    return lines


def status(state: LedgerState) -> list[str]:
    """Where the ledger is, what is pending, and every version applied or pending."""
    current = state.current_version
    dirty = f"YES: {state.dirty[0].version}" if state.dirty else "no"
    lines = [
        f"current version  {current if current is not None else '(none)'}",
        f"pending          {', '.join(str(m.version) for m in state.pending) or 'none'}",
        f"dirty            {dirty}",
        f"{'VERSION':>14}  {'STATE':8}  {'APPLIED AT':20}  {'MS':>7}  NAME",
    ]
    applied = {row.version: row for row in state.applied}
    names = {m.version: m.name for m in state.source.migrations}
    for version in sorted(applied.keys() | names.keys()):
        row = applied.get(version)
        when = row.applied_at.strftime("%Y-%m-%d %H:%M:%S") if row else ""
        ms = str(row.duration_ms) if row and row.duration_ms is not None else ""
        name = row.name if row else names[version]
        shown = row.state if row else "pending"
        lines.append(f"{version:>14}  {shown:8}  {when:20}  {ms:>7}  {name}")
    lines += [
        f"drift: version {version} is applied but missing from the source"
        for version in state.missing_from_source
    ]
    lines += [f"drift: {mismatch.describe()}" for mismatch in state.checksum_mismatches]
    return lines


def plan(listing: PlanListing, current: int | None) -> list[str]:
    verb = "roll back" if listing.direction == "down" else "apply"
    lines = [f"plan: {verb} {len(listing.migrations)} migration(s) from {current or 'none'}"]
    for item in listing.migrations:
        mode = "no-transaction" if item.no_transaction else "one transaction"
        touched = ", ".join(item.relations) or "-"
        lines.append(f"  {item.version}_{item.name}  [{mode}]  touches: {touched}")
    return lines
