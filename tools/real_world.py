"""Run migrate-safe on real-world golang-migrate directories the way a new user would, on one
throwaway PostgreSQL, and print what happened as a Markdown table (docs/real-world.md).

For each directory, on a fresh database: `lint` (no database), `apply --dry-run` (then our own
catalog query: did the rehearsal leave anything behind?), `apply` with defaults (preflight and
backup; when preflight refuses, the way out a user takes: `--force`), `verify` on its own
scratch database, `rollback --to 0` (`--force` when its lint refuses; is the catalog empty
again?) and `apply` again (the same schema as after the first apply?). `--truth FILE` adds
verify's confusion table against a ground truth written by `--ground-truth --json-out FILE`.

`--ground-truth` adds the step-by-step truth that verify is measured against, independent of
migrate-safe's engine: for each migration i, a copy of a database holding 1..i-1 (built by
executing the files as golang-migrate does: each file sent whole, as one simple query; dbmate
splits inside their own transaction unless marked no-transaction), then up_i, down_i, and a
comparison of `pg_dump --schema-only` (and of migrate-safe's fingerprint) before and after.

Metadata comes from a SOURCES.json in the directory or its parent: project, commit, path in the
repository, style ("dbmate" for split dbmate files), and optionally allow_missing_down,
rollback_floor (roll back to this version instead of 0) and setup (prerequisite SQL of our own,
run on every fresh database). The corpus itself never enters this repository.

    .venv/bin/python tools/real_world.py --ground-truth DIR... --json-out truth.json
    .venv/bin/python tools/real_world.py DIR... --truth truth.json --json-out results.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from migrate_safe.fingerprint import fingerprint
from migrate_safe.localpg import LocalPostgres

LEDGER_SCHEMA = "migrate_safe"
FILE_NAME = re.compile(r"^(?P<version>[0-9]+)_.+\.(?P<direction>up|down)\.sql$")
CLI_TIMEOUT_SECONDS = 1800
# Lines of pg_dump output that differ between two dumps of the same schema.
DUMP_NOISE = re.compile(r"^(\\(un)?restrict |-- Dumped (from|by) )")
# Everything a migration can leave behind, outside the system schemas: our own question to the
# catalog, so a rehearsal's "rolled back" is checked by something other than migrate-safe.
CATALOG_OBJECTS = """
WITH user_namespace AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'
)
SELECT 'schema' AS kind, nspname AS schema, nspname AS name FROM user_namespace
 WHERE nspname <> 'public'
UNION ALL SELECT 'extension', '', extname FROM pg_extension WHERE extname <> 'plpgsql'
UNION ALL SELECT 'relation', n.nspname, c.relname
  FROM pg_class c JOIN user_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'function', n.nspname,
       p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
  FROM pg_proc p JOIN user_namespace n ON n.oid = p.pronamespace
UNION ALL SELECT 'type', n.nspname, t.typname
  FROM pg_type t JOIN user_namespace n ON n.oid = t.typnamespace
 WHERE t.typrelid = 0 AND t.typcategory <> 'A'
UNION ALL SELECT 'collation', n.nspname, c.collname
  FROM pg_collation c JOIN user_namespace n ON n.oid = c.collnamespace
UNION ALL SELECT 'operator', n.nspname, o.oprname
  FROM pg_operator o JOIN user_namespace n ON n.oid = o.oprnamespace
ORDER BY 1, 2, 3
"""


# --- the corpus --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    version: int
    up: Path
    down: Path | None


@dataclass(frozen=True)
class Corpus:
    directory: Path
    project: str
    commit: str
    path: str
    style: str
    allow_missing_down: bool
    rollback_floor: int
    setup: Path | None  # prerequisite SQL (written by us), run on every fresh database first

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.project.lower()).strip("_")

    @property
    def common_flags(self) -> list[str]:
        return ["--allow-missing-down"] if self.allow_missing_down else []

    def wraps_in_transaction(self, text: str) -> bool:
        """dbmate runs each section in a transaction unless it says transaction:false (our
        split copies turn that into the no-transaction directive); golang-migrate never does."""
        return self.style == "dbmate" and "-- migrate-safe:no-transaction" not in text

    def pairs(self) -> list[Pair]:
        """Files as golang-migrate pairs them: by version number, whatever the names say."""
        found: dict[int, dict[str, Path]] = {}
        for path in self.directory.iterdir():
            match = FILE_NAME.match(path.name)
            if match:
                found.setdefault(int(match["version"]), {})[match["direction"]] = path
        return [
            Pair(version, files["up"], files.get("down"))
            for version, files in sorted(found.items())
            if "up" in files
        ]


def load_corpus(directory: Path) -> Corpus:
    """The directory and what SOURCES.json (beside it or one level up) says about it."""
    meta: Mapping[str, object] = {}
    home = directory
    for candidate in (directory / "SOURCES.json", directory.parent / "SOURCES.json"):
        if candidate.is_file():
            meta, home = json.loads(candidate.read_text()), candidate.parent
            break
    floor, setup = meta.get("rollback_floor", 0), meta.get("setup")
    return Corpus(
        directory=directory,
        project=str(meta.get("project", directory.parent.name)),
        commit=str(meta.get("commit", "?")),
        path=str(meta.get("path", directory.name)),
        style=str(meta.get("style", "golang-migrate")),
        allow_missing_down=bool(meta.get("allow_missing_down", False)),
        rollback_floor=floor if isinstance(floor, int) else 0,
        setup=home / setup if isinstance(setup, str) else None,
    )


# --- one throwaway server ----------------------------------------------------------------


class Server:
    """The throwaway PostgreSQL: databases made and dropped by name, DSNs kept out of output."""

    def __init__(self, pg: LocalPostgres) -> None:
        self.pg = pg

    def url(self, database: str = "postgres") -> str:
        return self.pg.url(database)

    def redact(self, text: str) -> str:
        return text.replace(self.pg.password, "***")

    def create(self, name: str, *, template: str | None = None) -> str:
        self.drop(name)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(statement)
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextmanager
    def fresh(self, name: str, corpus: Corpus) -> Iterator[str]:
        yield self.prepared(name, corpus)
        self.drop(name)

    def prepared(self, name: str, corpus: Corpus) -> str:
        """A new database holding what the directory assumes exists (its setup file)."""
        self.create(name)
        failed = _execute(self, name, corpus.setup, wrap=True) if corpus.setup else None
        if failed:
            raise RuntimeError(f"setup of {corpus.project} failed: {failed}")
        return name

    def catalog(self, database: str, *, besides: str | None = None) -> list[str]:
        """Every user object, as `kind schema.name`; `besides` leaves one schema out."""
        with psycopg.connect(self.url(database)) as conn:
            rows = conn.execute(CATALOG_OBJECTS).fetchall()
        return [
            f"{kind} {schema}.{name}" if schema and kind != "schema" else f"{kind} {name}"
            for kind, schema, name in rows
            if schema != besides
        ]

    def schema_dump(self, database: str) -> list[str]:
        """`pg_dump --schema-only` without the ledger: everything a schema can hold, and a
        check that does not depend on the code under test."""
        env = {**os.environ, "PGPASSWORD": self.pg.password}
        command = [self.pg.bin("pg_dump"), "--schema-only", "--exclude-schema", LEDGER_SCHEMA]
        command += ["-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres", database]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(self.redact(done.stderr.strip()))
        return [line for line in done.stdout.splitlines() if not DUMP_NOISE.match(line)]

    def migrate_safe_fingerprint(self, database: str) -> str | None:
        """migrate-safe's own fingerprint, or None when it cannot be read (it is being
        changed while this runs: the dump stays the reference)."""
        try:
            with psycopg.connect(self.url(database), autocommit=True) as conn:
                return fingerprint(conn, LEDGER_SCHEMA).hash
        except psycopg.Error:
            return None


# --- the migrate-safe CLI, as a user runs it ---------------------------------------------


@dataclass
class Step:
    """One CLI run: what the user typed (no DSN), its exit code and first error line."""

    command: str
    exit_code: int
    seconds: float
    error: str | None = None


@dataclass
class CliRun:
    step: Step
    report: Mapping[str, object]


class Cli:
    def __init__(self, server: Server, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.runs = 0

    def __call__(self, args: Sequence[str], *, database: str | None) -> CliRun:
        self.runs += 1
        log_dir = self.workdir / f"logs-{self.runs:03d}-{args[0]}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATIONS_DIR")}
        if database:
            env["DATABASE_URL"] = self.server.url(database)
        command = [sys.executable, "-m", "migrate_safe", *args, "--json"]
        command += ["--termination-log", "none", "--log-dir", str(log_dir)]
        started = time.monotonic()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.workdir,  # no stray ./migrate-safe.toml gets read
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        report = _parse_report(done.stdout)
        error = _first_error(report, done.stderr) if done.returncode else None
        step = Step(
            command="migrate-safe " + " ".join(args),
            exit_code=done.returncode,
            seconds=round(time.monotonic() - started, 1),
            error=self.server.redact(error) if error else None,
        )
        return CliRun(step, report)

    def supports(self, command: str, flag: str) -> bool:
        """Whether this migrate-safe knows a flag (the CLI changes while the corpus runs)."""
        help_command = [sys.executable, "-m", "migrate_safe", command, "--help"]
        done = subprocess.run(help_command, capture_output=True, text=True, check=False)
        return flag in done.stdout


def _parse_report(stdout: str) -> Mapping[str, object]:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return {}
    return report if isinstance(report, dict) else {}


def _first_error(report: Mapping[str, object], stderr: str) -> str:
    error = report.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]).strip().splitlines()[0]
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    flagged = [line for line in lines if "error" in line.lower() or "migrate-safe:" in line]
    return (flagged or lines or ["(no message)"])[0]


def _items(report: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = report.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the user sequence -------------------------------------------------------------------


@dataclass
class UserRun:
    project: str
    commit: str
    path: str
    style: str
    pairs: int
    lint: Step
    lint_counts: dict[str, int]
    dry_run: Step | None = None
    dry_run_left_behind: list[str] = field(default_factory=list)
    apply: Step | None = None
    applied: int | None = None
    current_version: int | None = None
    apply_forced: Step | None = None
    verify: Step | None = None
    verify_checked: int = 0
    verify_checked_versions: list[int] = field(default_factory=list)
    verify_not_run: int = 0
    verify_failing: list[int] = field(default_factory=list)
    verify_failing_step: dict[str, str] = field(default_factory=dict)  # version → failed step
    rollback: Step | None = None
    rolled_back: int | None = None
    rollback_forced: Step | None = None
    rollback_left_behind: list[str] = field(default_factory=list)
    rollback_clean: bool | None = None
    reapply: Step | None = None
    reapply_same_schema: bool | None = None
    reapply_same_fingerprint: bool | None = None
    seconds: float = 0.0


def user_sequence(server: Server, corpus: Corpus, workdir: Path) -> UserRun:
    cli = Cli(server, workdir)
    source = ["--migrations-dir", str(corpus.directory), *corpus.common_flags]
    database = f"rw_{corpus.slug}"
    started = time.monotonic()
    lint = cli(["lint", *source], database=None)
    run = UserRun(
        corpus.project,
        corpus.commit,
        corpus.path,
        corpus.style,
        _pair_count(corpus),
        lint=lint.step,
        lint_counts=_lint_counts(lint.report),
    )
    baseline = set(server.catalog(server.prepared(database, corpus)))
    rehearsal = cli(["apply", "--dry-run", *source], database=database)
    left = [item for item in server.catalog(database) if item not in baseline]
    run.dry_run, run.dry_run_left_behind = rehearsal.step, left
    server.prepared(database, corpus)  # whatever the rehearsal left, apply starts clean
    apply_flags = ["--backup-dir", str(workdir / "backups")]
    first = cli(["apply", *source, *apply_flags], database=database)
    run.apply = first.step
    way_out = _way_past_preflight(first.step)
    if way_out:  # what a user tries next when preflight stops them before anything ran
        apply_flags.append(way_out)
        first = cli(["apply", *source, *apply_flags], database=database)
        run.apply_forced = first.step
    run.applied = len(_items(first.report, "applied"))
    run.current_version = _int(first.report.get("current_version"))
    after_apply = _Schema.read(server, database)
    _verify(cli, run, corpus)
    _rollback(cli, server, run, corpus, source, database, baseline)
    again = cli(["apply", *source, *apply_flags], database=database)
    run.reapply = again.step
    after_reapply = _Schema.read(server, database)
    run.reapply_same_schema = after_reapply.dump == after_apply.dump
    run.reapply_same_fingerprint = after_reapply.same_fingerprint(after_apply)
    server.drop(database)
    run.seconds = round(time.monotonic() - started, 1)
    return run


def _way_past_preflight(step: Step) -> str | None:
    """--force when preflight refused (its documented way out); --skip-preflight when
    preflight itself broke (a migrate-safe defect the user can only step around)."""
    if step.exit_code == 1:
        return "--force"
    if step.exit_code == 2 and (step.error or "").startswith("unexpected error"):
        return "--skip-preflight"
    return None


def _pair_count(corpus: Corpus) -> int:
    return sum(1 for pair in corpus.pairs() if pair.down is not None)


def _lint_counts(report: Mapping[str, object]) -> dict[str, int]:
    lint = report.get("lint")
    summary = lint.get("summary") if isinstance(lint, dict) else None
    if not isinstance(summary, dict):
        return {}
    return {key: value for key, value in summary.items() if isinstance(value, int)}


def _verify(cli: Cli, run: UserRun, corpus: Corpus) -> None:
    """verify on its own scratch database (it creates one on the server it is given)."""
    setup = (
        ["--setup", str(corpus.setup)] if corpus.setup and cli.supports("verify", "--setup") else []
    )
    verified = cli(
        ["verify", str(corpus.directory), *corpus.common_flags, *setup], database="postgres"
    )
    run.verify = verified.step
    steps = _items(verified.report, "migrations") or _items(verified.report, "steps")
    run.verify_checked = sum(1 for step in steps if step.get("result") in ("pass", "warn", "fail"))
    run.verify_not_run = len(steps) - run.verify_checked
    for step in steps:
        version = _int(step.get("version"))
        if step.get("result") in ("pass", "warn", "fail") and version is not None:
            run.verify_checked_versions.append(version)
        if step.get("result") == "fail" and version is not None:
            run.verify_failing.append(version)
            run.verify_failing_step[str(version)] = str(step.get("failed_step") or "?")


def _rollback(
    cli: Cli,
    server: Server,
    run: UserRun,
    corpus: Corpus,
    source: list[str],
    database: str,
    baseline: set[str],
) -> None:
    floor = corpus.rollback_floor
    rolled = cli(["rollback", "--to", str(floor), *source], database=database)
    run.rollback = rolled.step
    if rolled.step.exit_code == 1 and "rollback --force" in (rolled.step.error or ""):
        rolled = cli(["rollback", "--to", str(floor), "--force", *source], database=database)
        run.rollback_forced = rolled.step  # the way out the refusal names
    run.rolled_back = len(_items(rolled.report, "rolled_back"))
    if floor == 0:
        left = [i for i in server.catalog(database, besides=LEDGER_SCHEMA) if i not in baseline]
        run.rollback_left_behind, run.rollback_clean = left, not left
        return
    # A directory whose oldest versions have no down: clean means "as if only ..floor ran".
    with server.fresh(f"rw_{corpus.slug}_floor", corpus) as reference:
        plain_apply = ["apply", "--to", str(floor), "--skip-preflight", "--no-backup"]
        cli([*plain_apply, *source], database=reference)
        expected = server.schema_dump(reference)
    run.rollback_clean = server.schema_dump(database) == expected


# --- the step-by-step ground truth -------------------------------------------------------


@dataclass
class TruthStep:
    version: int
    outcome: str  # good | bad-down | down-failed | up-failed | no-down
    detail: str = ""
    changed: list[str] = field(default_factory=list)  # the dump's -/+ lines, for explaining
    dump_differs: bool = False
    column_order_only: bool = False
    fingerprint_differs: bool | None = False  # None: the fingerprint could not be read


@dataclass
class GroundTruth:
    project: str
    steps: list[TruthStep] = field(default_factory=list)
    not_run: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad_downs(self) -> list[int]:
        return [s.version for s in self.steps if s.outcome in ("bad-down", "down-failed")]


def ground_truth(server: Server, corpus: Corpus) -> GroundTruth:
    truth = GroundTruth(corpus.project)
    started = time.monotonic()
    base, copy = f"gt_{corpus.slug}", f"gt_{corpus.slug}_step"
    server.prepared(base, corpus)
    pairs = corpus.pairs()
    before = _Schema.read(server, base)
    for index, pair in enumerate(pairs):
        server.create(copy, template=base)
        step = _truth_step(server, corpus, pair, copy, before)
        server.drop(copy)
        truth.steps.append(step)
        if step.outcome == "up-failed" or _run_as_its_tool(server, base, pair.up, corpus):
            truth.not_run = [p.version for p in pairs[index + 1 :]]
            break
        before = _Schema.read(server, base)
    server.drop(base)
    truth.seconds = round(time.monotonic() - started, 1)
    return truth


@dataclass(frozen=True)
class _Schema:
    dump: list[str]
    fingerprint: str | None

    @classmethod
    def read(cls, server: Server, database: str) -> _Schema:
        return cls(server.schema_dump(database), server.migrate_safe_fingerprint(database))

    def same_fingerprint(self, other: _Schema) -> bool | None:
        if self.fingerprint is None or other.fingerprint is None:
            return None
        return self.fingerprint == other.fingerprint


def _truth_step(
    server: Server, corpus: Corpus, pair: Pair, database: str, before: _Schema
) -> TruthStep:
    failed = _run_as_its_tool(server, database, pair.up, corpus)
    if failed:
        return TruthStep(pair.version, "up-failed", failed)
    if pair.down is None:
        return TruthStep(pair.version, "no-down")
    failed = _run_as_its_tool(server, database, pair.down, corpus)
    if failed:
        return TruthStep(pair.version, "down-failed", failed)
    after = _Schema.read(server, database)
    same = after.same_fingerprint(before)
    step = TruthStep(pair.version, "good", fingerprint_differs=None if same is None else not same)
    if after.dump != before.dump:
        step.outcome, step.dump_differs = "bad-down", True
        step.column_order_only = _table_bodies_sorted(after.dump) == _table_bodies_sorted(
            before.dump
        )
        step.changed = _changed_lines(before.dump, after.dump)
        step.detail = _short_diff(step.changed)
    return step


def _run_as_its_tool(server: Server, database: str, script: Path, corpus: Corpus) -> str | None:
    return _execute(server, database, script, wrap=corpus.wraps_in_transaction(script.read_text()))


def _execute(server: Server, database: str, script: Path, *, wrap: bool) -> str | None:
    """Send the whole file as one simple query, as golang-migrate and dbmate do (an implicit
    transaction unless the file has its own BEGIN/COMMIT), inside an explicit transaction when
    `wrap`. The error's first line with the file and line, or None."""
    text = script.read_text()
    try:
        with psycopg.connect(server.url(database), autocommit=True) as conn:
            if wrap:
                with conn.transaction():
                    conn.execute(text.encode())
            else:
                conn.execute(text.encode())
    except psycopg.Error as error:
        position = error.diag.statement_position
        where = f":{text.count(chr(10), 0, int(position)) + 1}" if position else ""
        return f"{script.name}{where}: " + server.redact(str(error)).strip().splitlines()[0]
    return None


def _table_bodies_sorted(dump: list[str]) -> list[str]:
    """The dump with each CREATE TABLE's column lines sorted: equal ⇒ only the order differs."""
    result: list[str] = []
    body: list[str] | None = None
    for line in dump:
        if line.startswith("CREATE TABLE") or line.startswith("CREATE UNLOGGED TABLE"):
            result.append(line)
            body = []
        elif body is not None and line.startswith(")"):
            result += sorted(item.rstrip(",") for item in body)
            result.append(line)
            body = None
        elif body is not None:
            body.append(line)
        else:
            result.append(line)
    return result


def _changed_lines(before: list[str], after: list[str], limit: int = 300) -> list[str]:
    """`-` what the down lost, `+` what it left behind or made differently."""
    return [
        (line[:300] if line[1:].strip() else f"{line[:1]}(blank line)")
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip() != "--"
    ][:limit]


def _short_diff(changed: list[str], limit: int = 6) -> str:
    changed = [line[:160] for line in changed if not line[1:].startswith("-- ")]
    more = f" (+{len(changed) - limit} more)" if len(changed) > limit else ""
    return " | ".join(changed[:limit]) + more


# --- output ------------------------------------------------------------------------------


def _cell(step: Step | None, extra: str) -> str:
    if step is None:
        return "—"
    return f"{step.exit_code}, {extra}" if extra else str(step.exit_code)


def markdown_table(runs: Sequence[UserRun]) -> str:
    header = (
        "| project | commit | pairs | lint (exit, E/W/I) | dry-run (exit, persisted?) "
        "| apply (exit, applied) | verify (exit, bad downs) | rollback to 0 (exit, clean?) "
        "| re-apply (exit, same fingerprint?) |\n|---|---|---:|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(_row(run) for run in runs)])


def _row(run: UserRun) -> str:
    counts = run.lint_counts
    lint = "/".join(str(counts.get(k, "?")) for k in ("error", "warning", "info"))
    persisted = "yes" if run.dry_run_left_behind else "no"
    if run.dry_run_left_behind and all(LEDGER_SCHEMA in i for i in run.dry_run_left_behind):
        persisted = "ledger only"
    apply = _cell(run.apply, str(run.applied) if run.apply_forced is None else "")
    if run.apply_forced is not None:
        flag = run.apply_forced.command.split()[-1]
        apply += f"; {flag}: {_cell(run.apply_forced, str(run.applied))}"
    failing = ", ".join(map(str, run.verify_failing)) or "none"
    not_run = f", {run.verify_not_run} not run" if run.verify_not_run else ""
    verify = _cell(run.verify, f"{failing} ({run.verify_checked} checked{not_run})")
    outcome = f"{run.rolled_back}, {_yes_no(run.rollback_clean)}"
    rollback = _cell(run.rollback, "" if run.rollback_forced else outcome)
    if run.rollback_forced is not None:
        rollback += f"; --force: {_cell(run.rollback_forced, outcome)}"
    same = _yes_no(run.reapply_same_schema)
    if run.reapply_same_fingerprint != run.reapply_same_schema:
        same += f" (fingerprint: {_yes_no(run.reapply_same_fingerprint)})"
    reapply = _cell(run.reapply, same)
    cells = [
        run.project,
        f"`{run.commit[:12]}`",
        str(run.pairs),
        f"{run.lint.exit_code}, {lint}",
        _cell(run.dry_run, persisted),
        apply,
        verify,
        rollback,
        reapply,
    ]
    return "| " + " | ".join(cells) + " |"


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def truth_lines(truths: Sequence[GroundTruth]) -> str:
    lines = []
    for truth in truths:
        bad = ", ".join(map(str, truth.bad_downs)) or "none"
        stopped = f"; stopped, {len(truth.not_run)} not run" if truth.not_run else ""
        lines.append(f"- {truth.project}: {len(truth.steps)} checked, bad downs: {bad}{stopped}")
        lines += [
            f"  - {step.version} {step.outcome}"
            + (" (column order only)" if step.column_order_only else "")
            + _fingerprint_note(step)
            + (f": {step.detail}" if step.detail else "")
            for step in truth.steps
            if step.outcome != "good"
        ]
    return "\n".join(lines)


def _fingerprint_note(step: TruthStep) -> str:
    if step.outcome != "bad-down" or step.fingerprint_differs:
        return ""
    if step.fingerprint_differs is None:
        return " [migrate-safe fingerprint: n/a]"
    return " [migrate-safe fingerprint: equal, it misses this]"


@dataclass(frozen=True)
class Confusion:
    """verify against the ground truth, for one directory."""

    project: str
    bad: list[int]  # the truth: the down fails, or leaves a schema other than before the up
    found: list[int]  # bad, and verify failed it at its down
    found_elsewhere: list[int]  # bad, and verify failed it, but at another step (up, rehearsal)
    missed: list[int]  # bad, checked by verify, passed
    unchecked: list[int]  # bad, but verify never got to it
    false_alarms: list[int]  # good in the truth, failed by verify
    column_order_only: list[int]  # bad only by column order (verify may rightly say so)


def confusion(run: UserRun, truth: Mapping[str, object]) -> Confusion:
    listed = truth.get("steps")
    steps = [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []
    bad = [int(s["version"]) for s in steps if s["outcome"] in ("bad-down", "down-failed")]
    failing, checked = set(run.verify_failing), set(run.verify_checked_versions)
    at_down = {int(v) for v, step in run.verify_failing_step.items() if "down" in step}
    return Confusion(
        project=run.project,
        bad=bad,
        found=[v for v in bad if v in at_down],
        found_elsewhere=[v for v in bad if v in failing and v not in at_down],
        missed=[v for v in bad if v in checked and v not in failing],
        unchecked=[v for v in bad if v not in checked],
        false_alarms=sorted(failing - set(bad)),
        column_order_only=[int(s["version"]) for s in steps if s.get("column_order_only")],
    )


def load_truths(truth_file: Path) -> dict[str, Mapping[str, object]]:
    """A --ground-truth --json-out file, by project; read before the long run starts."""
    truths = json.loads(truth_file.read_text()).get("ground_truth", [])
    return {str(t["project"]): t for t in truths if isinstance(t, dict)}


def confusion_table(runs: Sequence[UserRun], by_project: Mapping[str, Mapping[str, object]]) -> str:
    rows = [
        "| project | bad downs (truth) | found by verify | found at another step "
        "| missed | not checked | false alarms | of the bad: column order only |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        truth = by_project.get(run.project) or by_project.get(run.project.split(" (")[0])
        if truth is None:
            continue
        c = confusion(run, truth)
        counts = [c.bad, c.found, c.found_elsewhere, c.missed, c.unchecked, c.false_alarms]
        cells = [c.project, *(str(len(x)) for x in counts), str(len(c.column_order_only))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("directories", nargs="+", type=Path, help="golang-migrate directories")
    parser.add_argument("--json-out", type=Path, help="write every raw result here")
    parser.add_argument("--ground-truth", action="store_true", help="step-by-step truth only")
    parser.add_argument(
        "--truth", type=Path, help="a --ground-truth --json-out file: add verify's confusion table"
    )
    args = parser.parse_args(argv)
    truths = load_truths(args.truth) if args.truth else {}
    corpora = [load_corpus(directory.resolve()) for directory in args.directories]
    started = time.monotonic()
    results: dict[str, object] = {}
    with LocalPostgres() as pg, tempfile.TemporaryDirectory(prefix="real-world-") as tmp:
        server = Server(pg)
        if args.ground_truth:
            found = []
            for corpus in corpora:
                _announce(corpus)
                found.append(ground_truth(server, corpus))
            print(truth_lines(found))
            results["ground_truth"] = [asdict(t) | {"bad_downs": t.bad_downs} for t in found]
        else:
            runs = []
            for corpus in corpora:
                _announce(corpus)
                runs.append(user_sequence(server, corpus, _workdir(tmp, corpus)))
            print(markdown_table(runs))
            results["runs"] = [asdict(run) for run in runs]
            if truths:
                print("\n" + confusion_table(runs, truths))
    results["seconds"] = round(time.monotonic() - started, 1)
    print(f"\n{len(corpora)} directories in {results['seconds']} s", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _workdir(tmp: str, corpus: Corpus) -> Path:
    path = Path(tmp) / corpus.slug
    path.mkdir(parents=True, exist_ok=True)
    return path


def _announce(corpus: Corpus) -> None:
    print(f"… {corpus.project} ({corpus.directory})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
