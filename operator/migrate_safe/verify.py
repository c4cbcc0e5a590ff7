"""verify, the CI gate: on throwaway databases, every migration's down must give back exactly
the schema before its up, and a second up must give the same schema as the first.

Each migration is checked in isolation, so one bad down never hides or causes another
failure: a "progression" database receives the ups only (1..i-1, never a down), and step i
runs on a copy of it (`CREATE DATABASE … TEMPLATE`): fingerprint F(i-1); up_i → F(i); down_i
→ must equal F(i-1); up_i again → must equal F(i). Plus the locks each up takes (as in the
rehearsal) and timing. An up that fails stops the progression: later steps cannot run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from textwrap import indent
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migrate_safe.config import Settings
from migrate_safe.engine import Engine
from migrate_safe.errors import ConfigError, MigrateSafeError
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint
from migrate_safe.lint import LintConfig, lint_migrations
from migrate_safe.outcome import FAIL, NOT_RUN, PASS, WARN, MigrationCheck
from migrate_safe.plan import RollbackStep
from migrate_safe.report import Reporter
from migrate_safe.scanner import Migration
from migrate_safe.session import connect, locked_ledger
from migrate_safe.settings_file import DEFAULT_FILE, SettingsFile, read_section, setting
from migrate_safe.statements import SqlSyntaxError, split_statements

# --- where verify works ------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyTable:
    """`[verify]` of the settings file (`--setup` flags win over `setup`)."""

    setup: tuple[str, ...] = setting(())


@dataclass(frozen=True)
class SetupFile:
    """Prerequisite SQL (objects the directory assumes exist, e.g. a table another service
    owns), run in the scratch database before the first step: part of every baseline."""

    path: Path
    origin: str  # the flag or settings key that named it
    text: str

    @classmethod
    def read(cls, path: Path, origin: str) -> SetupFile:
        try:
            return cls(path, origin, path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{origin} {path}: not UTF-8 text") from None
        except OSError as error:
            raise ConfigError(f"{origin} {path}: cannot read: {error.strerror}") from None


def setup_files(
    flags: list[Path] | None, settings_file: SettingsFile, config: Path | None
) -> list[SetupFile]:
    """The files of `--setup` (repeatable) or else of `[verify] setup`, read before any
    database is created so a wrong path fails fast; relative paths are from the current
    directory, like every other path setting."""
    if flags:
        return [SetupFile.read(path, "--setup") for path in flags]
    table = read_section(settings_file, "verify", VerifyTable, config)
    origin = f"{config or DEFAULT_FILE}: [verify] setup:"
    return [SetupFile.read(Path(path), origin) for path in table.setup]


@dataclass(frozen=True)
class ScratchServer:
    """New databases on one server, all dropped at the end: the progression (ups only) and
    one copy of it per step. `admin` connects to a database that is neither."""

    admin: Settings
    prefix: str = field(default_factory=lambda: f"migrate_safe_verify_{uuid.uuid4().hex[:10]}")

    def settings_for(self, database: str) -> Settings:
        return replace(
            self.admin,
            database_url=make_conninfo(self.admin.require_database_url(), dbname=database),
        )

    @property
    def progression(self) -> Settings:
        return self.settings_for(self.prefix)

    @contextmanager
    def databases(self) -> Iterator[None]:
        self._admin("CREATE DATABASE {}", self.prefix)
        try:
            yield
        finally:
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", f"{self.prefix}_step")
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.prefix)

    @contextmanager
    def step(self) -> Iterator[Settings]:
        """A copy of the progression as it is now (no session may be connected to it)."""
        name = f"{self.prefix}_step"
        self._admin("CREATE DATABASE {} TEMPLATE {}", name, self.prefix)
        try:
            yield self.settings_for(name)
        finally:
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _admin(self, template: str, *names: str) -> None:
        with connect(self.admin, "verify") as conn:
            conn.execute(sql.SQL(template).format(*map(sql.Identifier, names)))


def prepare_progression(progression: Settings, setups: list[SetupFile]) -> int:
    """Run the setup files in the progression database; its server's major version."""
    with connect(progression, "verify") as conn:
        for setup in setups:
            _run_setup(conn, setup)
        return conn.info.server_version // 10000


def _run_setup(conn: psycopg.Connection[Any], setup: SetupFile) -> None:
    """Statement by statement in autocommit, as psql would; an error names file:line."""
    where = f"{setup.origin} {setup.path}"
    try:
        statements = split_statements(setup.text)
    except SqlSyntaxError as error:
        raise ConfigError(f"{where}:{error.line}: syntax error: {error.message}") from None
    for statement in statements:
        try:
            conn.execute(statement.sql.encode())
        except psycopg.Error as error:
            position = error.diag.statement_position
            line = statement.line
            if position and position.isdigit():
                line += statement.sql.count("\n", 0, int(position) - 1)
            raise ConfigError(
                f"{where}:{line}: {error.diag.message_primary or error} "
                f"(SQLSTATE {error.sqlstate}); the setup runs before any migration"
            ) from None


# --- the steps ---------------------------------------------------------------------------------


class Verifier:
    def __init__(
        self,
        report: Reporter,
        slow_seconds: float,
        lint: LintConfig,
        pg_version: int,
        allow_missing_down: bool = False,
    ) -> None:
        self.allow_missing_down = allow_missing_down
        self.report = report
        self.slow_seconds = slow_seconds
        self.lint_config = lint
        self.pg_version = pg_version
        self.checked: list[Migration] = []

    def run(self, scratch: ScratchServer, migrations: list[Migration]) -> list[MigrationCheck]:
        """Every step, each on its own copy of the progression; an up that fails stops the
        progression and the steps after it are reported as not run."""
        results: list[MigrationCheck] = []
        stopped_by: int | None = None
        for migration in migrations:
            if stopped_by is not None:
                results.append(_not_run(migration, stopped_by))
                continue
            self.report.progress(f"verify {migration.version}_{migration.name}:")
            with scratch.step() as step:
                result = self.check(migration, step)
            results.append(result)
            if result.failed_step == "up" or not self._advance(scratch.progression, migration):
                stopped_by = migration.version
        return results

    def _advance(self, progression: Settings, migration: Migration) -> bool:
        """Apply the up to the progression (quietly: the step already showed it)."""
        quiet = replace(self.report, quiet=True)
        try:
            with locked_ledger(progression, "verify") as ledger:
                Engine(ledger.conn, ledger, progression.policy, quiet).apply(migration)
        except MigrateSafeError as error:
            self.report.progress(f"  up of {migration.version} failed on the progression: {error}")
            return False
        return True

    def check(self, migration: Migration, database: Settings) -> MigrationCheck:
        result = MigrationCheck(migration.version, migration.name)
        findings = lint_migrations(
            [migration],
            pg_version=self.pg_version,
            config=self.lint_config,
            history=self.checked,
        )
        result.lint = [f.as_dict() for f in findings if f.active]
        self.checked.append(migration)
        with locked_ledger(database, "verify") as ledger:
            engine = Engine(ledger.conn, ledger, database.policy, self.report)
            _Step(engine, migration, result, self.allow_missing_down).run()
        if result.result == PASS and result.up_ms > self.slow_seconds * 1000:
            result.result = WARN
            result.problems.append(f"slow: {result.up_ms} ms > {self.slow_seconds:g}s")
        return result


@dataclass
class _Step:
    """up, down, up again on one database, each compared with the fingerprint it must give."""

    engine: Engine
    migration: Migration
    result: MigrationCheck
    allow_missing_down: bool = False

    def run(self) -> None:
        before = self._fingerprint()
        if not self._attempt("rehearsal", self._locks):
            return
        if not self._attempt("up", lambda: self._timed("up_ms", self._up)):
            return
        after_up = self._fingerprint()
        self.result.fingerprint = after_up.hash
        if self.migration.down is None:
            if not self.allow_missing_down:
                self.result.fail("down", "no down migration: its rollback cannot be proven")
            else:  # the user said so: the up is checked, the rollback is not provable
                self.result.result = WARN
                self.result.problems.append(
                    "no down migration (allowed by --allow-missing-down): not rolled back"
                )
            return
        if not self._attempt("down", lambda: self._timed("down_ms", self._down)):
            return
        self._compare("down", "down did not restore the schema before up", before)
        if self._attempt("up again", self._up):
            self._compare("up again", "second up gave a different schema than the first", after_up)

    def _attempt(self, step: str, action: Callable[[], None]) -> bool:
        try:
            action()
        except MigrateSafeError as error:
            detail = error.message.removeprefix(f"{self.result.label} failed: ")
            self.result.fail(step, f"{step} failed: {detail}")
            return False
        return True

    def _up(self) -> None:
        self.engine.apply(self.migration)

    def _down(self) -> None:
        assert self.migration.down is not None
        row = next(r for r in self.engine.ledger.applied() if r.version == self.migration.version)
        self.engine.rollback(RollbackStep(row, self.migration.down))

    def _fingerprint(self) -> Fingerprint:
        return fingerprint(self.engine.conn, self.engine.ledger.schema)

    def _compare(self, step: str, problem: str, expected: Fingerprint) -> None:
        now = self._fingerprint()
        if now.hash != expected.hash:
            detail = describe_diff(diff(expected, now), "expected", "actual")
            self.result.fail(step, f"{problem}:\n{detail}")

    def _locks(self) -> None:
        if self.migration.up.directives.no_transaction:
            self.result.locks = ["(no-transaction: not rehearsed)"]
            return
        rehearsal = self.engine.rehearse([self.migration])[0]
        found = {
            f"{lock.mode} on {lock.relation}"
            for statement in rehearsal.statements or []
            for lock in statement.locks
        }
        self.result.locks = sorted(found)

    def _timed(self, attribute: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            action()
        finally:  # a failed up or down took its time too
            setattr(self.result, attribute, round((time.monotonic() - started) * 1000))


def _not_run(migration: Migration, failed_up: int) -> MigrationCheck:
    check = MigrationCheck(migration.version, migration.name, result=NOT_RUN)
    check.problems.append(f"not run — up of {failed_up} failed")
    return check


# --- the summary -------------------------------------------------------------------------------

_SHOWN = {PASS: "pass", WARN: "warn", FAIL: "FAIL", NOT_RUN: "not run"}
_COUNTED = {PASS: "passed", WARN: "warned", FAIL: "failed", NOT_RUN: "not run"}


def _headline(problem: str) -> str:
    return problem.split("\n", 1)[0].rstrip(":")


def text_summary(results: list[MigrationCheck]) -> str:
    """Every step in one table, then the details (fingerprint differences) of each failure."""
    counts = {kind: sum(r.result == kind for r in results) for kind in _COUNTED}
    tally = ", ".join(f"{n} {_COUNTED[kind]}" for kind, n in counts.items() if n)
    rows = [("version", "name", "result", "up ms", "down ms")]
    rows += [
        (
            str(r.version),
            r.name,
            _SHOWN[r.result],
            "" if r.result == NOT_RUN else str(r.up_ms),
            str(r.down_ms) if r.down_ms else "",
        )
        for r in results
    ]
    problems = ["problem"] + [_headline(r.problems[0]) if r.problems else "" for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"verify: {len(results)} migration(s): {tally or 'none'}", ""]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        + f"  {problem}"
        for row, problem in zip(rows, problems, strict=True)
    ]
    return "\n".join(line.rstrip() for line in lines + _details(results))


def failure_message(failed: list[MigrationCheck], total: int) -> str:
    """Names every failing migration and what failed first in each."""
    if len(failed) == 1:
        return f"verify failed at {failed[0].label}: {_headline(failed[0].problems[0])}"
    each = "; ".join(f"{r.label}: {_headline(r.problems[0])}" for r in failed)
    return f"verify failed at {len(failed)} of {total} migrations: {each}"


def _details(results: list[MigrationCheck]) -> list[str]:
    """Each problem of a failing step in full, e.g. the fingerprint difference a down left."""
    lines: list[str] = []
    for r in results:
        if r.result == FAIL:
            lines += ["", f"{r.label}:"] + [indent(problem, "  ") for problem in r.problems]
    return lines


def markdown(results: list[MigrationCheck]) -> str:
    """A summary fit for a pull-request comment."""
    failed = [r for r in results if r.result == FAIL]
    verdict = f"❌ {len(failed)} failed" if failed else "✅ passed"
    lines = [
        f"### migrate-safe verify: {verdict}",
        "",
        f"{len(results)} migration(s), each checked on its own copy of the schema before it: "
        "up, down back to that schema, up again.",
        "",
        "| version | name | result | up ms | down ms | locks taken by up | lint |",
        "|---:|---|---|---:|---:|---|---|",
    ]
    for r in results:
        if r.result == NOT_RUN:
            lines.append(f"| {r.version} | {r.name} | {r.problems[0]} | | | | |")
            continue
        icon = {PASS: "✅", WARN: "⚠️", FAIL: "❌"}[r.result]
        locks = "<br>".join(r.locks) or "none"
        lint = "<br>".join(f"{f['rule']} ({f['severity']}) line {f['line']}" for f in r.lint)
        lines.append(
            f"| {r.version} | {r.name} | {icon} {r.result} | {r.up_ms} | {r.down_ms} | {locks} "
            f"| {lint or 'clean'} |"
        )
    for r in results:
        if r.result == NOT_RUN:
            continue
        for problem in r.problems:
            lines += ["", f"**{r.label}**: ", "```", problem, "```"]
    return "\n".join(lines) + "\n"
