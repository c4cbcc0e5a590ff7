"""Pure comparison of the ledger with the source: what is applied, pending, drifted, and what
apply or rollback would run. No database access here, so every rule is unit-tested directly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from migrate_safe.errors import ConfigError, MigrationFailed, RollbackFailed
from migrate_safe.ledger import AppliedRow
from migrate_safe.scanner import Migration, Script
from migrate_safe.source import Source, script_from_text


@dataclass(frozen=True)
class ChecksumMismatch:
    version: int
    file: str
    ledger_checksum: str
    source_checksum: str

    def describe(self) -> str:
        return (
            f"{self.file}: changed after it was applied (ledger sha256 {self.ledger_checksum},"
            f" file sha256 {self.source_checksum})"
        )


@dataclass(frozen=True)
class RollbackStep:
    row: AppliedRow
    down: Script


@dataclass
class LedgerState:
    applied: list[AppliedRow]
    source: Source

    @property
    def current_version(self) -> int | None:
        return self.applied[-1].version if self.applied else None

    @property
    def applied_versions(self) -> set[int]:
        return {row.version for row in self.applied}

    @property
    def dirty(self) -> list[AppliedRow]:
        return [row for row in self.applied if row.dirty]

    @property
    def pending(self) -> list[Migration]:
        done = self.applied_versions
        return [m for m in self.source.migrations if m.version not in done]

    @property
    def missing_from_source(self) -> list[int]:
        known = self.source.by_version()
        return [row.version for row in self.applied if row.version not in known]

    @property
    def checksum_mismatches(self) -> list[ChecksumMismatch]:
        known = self.source.by_version()
        return [
            ChecksumMismatch(row.version, known[row.version].up.origin, row.checksum, m.up.checksum)
            for row in self.applied
            if (m := known.get(row.version)) and m.up.checksum != row.checksum
        ]

    # --- what apply would run ------------------------------------------------------------

    def refuse_unsafe_apply(self) -> None:
        """Dirty rows and edited files stop an apply before anything runs (exit 2)."""
        if self.dirty:
            versions = ", ".join(str(r.version) for r in self.dirty)
            raise MigrationFailed(
                f"ledger is dirty at version {versions}: a no-transaction migration stopped "
                "midway. Check the database by hand, then run `migrate-safe force --version N` "
                "(N = the version the schema is really at) or `migrate-safe repair`.",
                details={"dirty_versions": [r.version for r in self.dirty]},
            )
        mismatches = self.checksum_mismatches
        if mismatches:
            lines = "\n".join(f"  - {c.describe()}" for c in mismatches)
            raise MigrationFailed(
                "applied migrations were edited; restore the files or run `migrate-safe "
                f"repair` if the change is intended:\n{lines}",
                details={"checksum_mismatches": [c.version for c in mismatches]},
            )

    def to_apply(self, target: int | None) -> list[Migration]:
        known = self.source.by_version()
        if target is not None and target not in known:
            raise ConfigError(f"--to {target}: no migration with that version in the source")
        current = self.current_version
        if target is not None and current is not None and target < current:
            raise ConfigError(
                f"--to {target} is below the current version {current}; "
                f"use `migrate-safe rollback --to {target}`"
            )
        pending = [m for m in self.pending if target is None or m.version <= target]
        late = [m for m in pending if current is not None and m.version < current]
        if late:
            names = ", ".join(m.up.origin for m in late)
            raise MigrationFailed(
                f"out-of-order migrations older than the current version {current}: {names}; "
                "give them a version above the current one"
            )
        return pending

    # --- what rollback would run -----------------------------------------------------------

    def to_roll_back(self, *, target: int | None, steps: int | None) -> list[RollbackStep]:
        """Newest first; the down SQL stored at apply time wins over the source's file."""
        if target is not None and steps is not None:
            raise ConfigError("rollback: pass --to or --steps, not both")
        if target is not None and target < 0:
            raise ConfigError("--to must be 0 (roll back everything) or a version")
        rows = list(reversed(self.applied))
        if target is not None:
            rows = [r for r in rows if r.version > target]
        else:
            rows = rows[: 1 if steps is None else steps]
        known = self.source.by_version()
        steps_out: list[RollbackStep] = []
        missing: list[int] = []
        for row in rows:
            down = _down_script(row, known.get(row.version))
            if down is None:
                missing.append(row.version)
            else:
                steps_out.append(RollbackStep(row, down))
        if missing:
            raise RollbackFailed(
                "no down migration (neither stored in the ledger nor in the source) for "
                f"version(s) {', '.join(map(str, missing))}; nothing was rolled back",
                details={"missing_down": missing},
            )
        return steps_out


def plan_hash(direction: str, migrations: list[Migration]) -> str:
    """Identifies exactly what would run: an approval of this hash approves these files."""
    canonical = [
        [m.version, m.up.checksum, m.down.checksum if m.down else None] for m in migrations
    ]
    return hashlib.sha256(json.dumps([direction, canonical]).encode()).hexdigest()


def _down_script(row: AppliedRow, migration: Migration | None) -> Script | None:
    if row.down_sql is not None:
        return script_from_text(row.down_sql, f"ledger:{row.version}_{row.name}.down.sql")
    return migration.down if migration else None
