"""verify, the CI gate: on a throwaway database, every migration's down must give back exactly
the schema before its up, and a second up must give the same schema as the first.

For each migration i: fingerprint F(i-1); up_i → F(i); down_i → must equal F(i-1);
up_i again → must equal F(i). Plus the locks each up takes (as in the rehearsal) and timing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from migrate_safe.engine import Engine
from migrate_safe.errors import MigrateSafeError
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint
from migrate_safe.ledger import Ledger
from migrate_safe.lint import LintConfig, lint_migrations
from migrate_safe.plan import RollbackStep
from migrate_safe.source import Migration


@dataclass
class MigrationCheck:
    version: int
    name: str
    result: str = "pass"  # pass | fail | warn
    up_ms: int = 0
    down_ms: int = 0
    locks: list[str] = field(default_factory=list)
    lint: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.result = "fail"
        self.problems.append(problem)


class Verifier:
    def __init__(
        self, conn: psycopg.Connection[Any], engine: Engine, slow_seconds: float, lint: LintConfig
    ) -> None:
        self.conn = conn
        self.engine = engine
        self.ledger: Ledger = engine.ledger
        self.slow_seconds = slow_seconds
        self.lint_config = lint
        self.checked: list[Migration] = []

    def _fingerprint(self) -> Fingerprint:
        return fingerprint(self.conn, self.ledger.schema)

    def check(self, migration: Migration) -> MigrationCheck:
        result = MigrationCheck(migration.version, migration.name)
        findings = lint_migrations(
            [migration], pg_version=self.conn.info.server_version // 10000,
            config=self.lint_config, history=self.checked,
        )  # fmt: skip
        result.lint = [f.as_dict() for f in findings if f.active]
        self.checked.append(migration)
        before = self._fingerprint()
        result.locks = self._locks(migration)
        try:
            result.up_ms = self._timed(lambda: self.engine.apply(migration))
            after_up = self._fingerprint()
            if migration.down is None:
                result.fail("no down migration: its rollback cannot be proven")
                return result
            row = next(r for r in self.ledger.applied() if r.version == migration.version)
            step = RollbackStep(row, migration.down)
            result.down_ms = self._timed(lambda: self.engine.rollback(step))
            self._compare(result, "down did not restore the schema before up", before)
            self.engine.apply(migration)
            self._compare(result, "second up gave a different schema than the first", after_up)
        except MigrateSafeError as error:
            result.fail(error.message)
        if result.result == "pass" and result.up_ms > self.slow_seconds * 1000:
            result.result = "warn"
            result.problems.append(f"slow: {result.up_ms} ms > {self.slow_seconds:g}s")
        return result

    def _compare(self, result: MigrationCheck, problem: str, expected: Fingerprint) -> None:
        now = self._fingerprint()
        if now.hash != expected.hash:
            detail = describe_diff(diff(expected, now), "expected", "actual")
            result.fail(f"{problem}:\n{detail}")

    def _locks(self, migration: Migration) -> list[str]:
        if migration.up.directives.no_transaction:
            return ["(no-transaction: not rehearsed)"]
        rehearsal = self.engine.rehearse([migration])[0]
        found = {
            f"{lock['mode']} on {lock['relation']}"
            for statement in rehearsal.get("statements", [])
            for lock in statement["locks"]
        }
        return sorted(found)

    @staticmethod
    def _timed(action: Any) -> int:
        started = time.monotonic()
        action()
        return round((time.monotonic() - started) * 1000)


def markdown(results: list[MigrationCheck], skipped: list[Migration]) -> str:
    """A summary fit for a pull-request comment."""
    failed = [r for r in results if r.result == "fail"]
    verdict = "❌ failed" if failed else "✅ passed"
    lines = [
        f"### migrate-safe verify: {verdict}",
        "",
        f"{len(results)} migration(s) checked: up, down back to the previous schema, up again.",
        "",
        "| version | name | result | up ms | down ms | locks taken by up | lint |",
        "|---:|---|---|---:|---:|---|---|",
    ]
    for r in results:
        icon = {"pass": "✅", "warn": "⚠️", "fail": "❌"}[r.result]
        locks = "<br>".join(r.locks) or "none"
        lint = "<br>".join(f"{f['rule']} ({f['severity']}) line {f['line']}" for f in r.lint)
        lines.append(
            f"| {r.version} | {r.name} | {icon} {r.result} | {r.up_ms} | {r.down_ms} | {locks} "
            f"| {lint or 'clean'} |"
        )
    lines += [f"| {m.version} | {m.name} | not run | | | | |" for m in skipped]
    for r in results:
        for problem in r.problems:
            lines += ["", f"**{r.version}_{r.name}**: ", "```", problem, "```"]
    return "\n".join(lines) + "\n"
