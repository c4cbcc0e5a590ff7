"""Apply throughput: the same migrations applied by every tool, process start included.

    .venv/bin/python bench/throughput.py                 # 1,000 small + 50 over a 1 GB table set
    .venv/bin/python bench/throughput.py --big-gb 0      # only the 1,000 small migrations
    .venv/bin/python bench/throughput.py --smoke         # seconds; what tests/bench checks
    .venv/bin/python bench/throughput.py --big-gb 0 --runs 0 --big-file-runs 3
                                                         # only apply's memory on a 20 MiB file

Part 1 applies --small migrations (create table, add column, create index, insert rows, in
turn) to an empty database; part 2 applies 50 migrations (columns, defaults, comments, indexes,
a validated check, updates, new tables) to a database holding --big-gb GB in five tables. Every
run starts from a fresh copy of the same database, and each run is checked (all tables there).
The ratio is to psql applying each file in its own transaction over one connection: the
physical limit of applying SQL files this way. With --profile, migrate-safe's own part-1 run is
profiled with pyinstrument into docs/benchmarks/throughput-profile.txt. With --big-file-runs,
apply's peak RSS on one 20 MiB INSERT is measured against the same command on a 100-row one.

Python tools run with their bytecode cached, as an installed package has it: an environment
with PYTHONDONTWRITEBYTECODE would make every run compile the sources it imports again.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from benchlib import (
    DOCS,
    cached_tool_dir,
    create_database,
    drop_database,
    machine_line,
    median,
    pyplot,
    table,
)
from peer_tools import Step, Target, Tool, migrate_safe, peers, psql_per_file, psql_single
from psycopg.pq import Trace

import migrate_safe as migrate_safe_module
from migrate_safe.config import ApplyPolicy, Redactor
from migrate_safe.engine import Engine
from migrate_safe.ledger import Ledger
from migrate_safe.localpg import LocalPostgres
from migrate_safe.report import Reporter
from migrate_safe.scanner import scan_directory

BIG_TEMPLATE = "tp_big"
BIG_TABLES = 5
RUN_TIMEOUT = 300  # seconds; a tool that hangs (Flyway on CREATE INDEX CONCURRENTLY) is cut off


def small_steps(count: int) -> list[Step]:
    """Four kinds in turn on table t<n>: create, add a column, index it, insert rows."""
    steps = []
    for i in range(count):
        t = f"t{i // 4}"
        up, down = [
            (f"CREATE TABLE {t} (id int PRIMARY KEY, v text);", f"DROP TABLE {t};"),
            (f"ALTER TABLE {t} ADD COLUMN c int;", f"ALTER TABLE {t} DROP COLUMN c;"),
            (f"CREATE INDEX {t}_v_idx ON {t} (v);", f"DROP INDEX {t}_v_idx;"),
            (f"INSERT INTO {t} SELECT g, 'x' || g FROM generate_series(1, 10) g;",
             f"DELETE FROM {t} WHERE id <= 10;"),
        ][i % 4]  # fmt: skip
        # An index on a table created by an earlier file of the same release is safe to build
        # in the transaction; a migrate-safe user says so to its linter (MS101).
        allow = "MS101" if i % 4 == 2 else ""
        steps.append(Step(i + 1, f"step_{i + 1}", up, down, allow=allow))
    return steps


def big_steps() -> list[Step]:
    """Ten migrations per big table: the everyday mix, a few of which scan the table."""
    steps: list[Step] = []
    for j in range(BIG_TABLES):
        b = f"b{j}"
        pairs = [
            (f"ALTER TABLE {b} ADD COLUMN n int;", f"ALTER TABLE {b} DROP COLUMN n;"),
            (f"ALTER TABLE {b} ADD COLUMN d text DEFAULT 'x';", f"ALTER TABLE {b} DROP COLUMN d;"),
            (f"ALTER TABLE {b} ALTER COLUMN d SET DEFAULT 'y';",
             f"ALTER TABLE {b} ALTER COLUMN d SET DEFAULT 'x';"),
            (f"COMMENT ON TABLE {b} IS 'big';", f"COMMENT ON TABLE {b} IS NULL;"),
            (f"CREATE INDEX CONCURRENTLY {b}_a_idx ON {b} (a);",
             f"DROP INDEX CONCURRENTLY {b}_a_idx;"),
            (f"ALTER TABLE {b} ADD CONSTRAINT {b}_a_check CHECK (a >= 0) NOT VALID;",
             f"ALTER TABLE {b} DROP CONSTRAINT {b}_a_check;"),
            (f"ALTER TABLE {b} VALIDATE CONSTRAINT {b}_a_check;", "SELECT 1;"),
            (f"UPDATE {b} SET n = 1 WHERE id <= 1000;", f"UPDATE {b} SET n = NULL;"),
            (f"CREATE TABLE {b}_audit (id bigint PRIMARY KEY, at timestamptz);",
             f"DROP TABLE {b}_audit;"),
            (f"ALTER TABLE {b}_audit ADD COLUMN note text;",
             f"ALTER TABLE {b}_audit DROP COLUMN note;"),
        ]  # fmt: skip
        for up, down in pairs:
            # Every tool builds the index concurrently in a no-transaction file, the form that
            # keeps a big table writable and that each of them supports.
            concurrent = "CONCURRENTLY" in up
            steps.append(Step(len(steps) + 1, f"big_{len(steps) + 1}", up, down, concurrent))
    return steps


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --- one run ----------------------------------------------------------------------------


def tables_present(pg: LocalPostgres, dbname: str, pattern: str) -> int:
    with psycopg.connect(pg.url(dbname), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ %s",
            [pattern],
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Part:
    """One of the two workloads: its steps, where a run starts from, and how it is checked."""

    title: str
    steps: list[Step]
    template: str  # database copied before every run
    copy_files: bool  # clone a big template by files, not through the WAL
    pattern: str  # tables that must exist after a complete run
    expected: int


def tool_env(target: Target) -> dict[str, str]:
    """The tool's environment, with Python's bytecode cache written and read."""
    env = target.env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_migrate_safe() -> None:
    """migrate-safe's bytecode, written once before the runs, not inside the first one."""
    package = Path(migrate_safe_module.__file__).parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], env=env,
                   check=False, capture_output=True)  # fmt: skip


def apply_once(pg: LocalPostgres, admin: psycopg.Connection[Any], tool: Tool, part: Part,
               directory: Path) -> tuple[float, str | None]:  # fmt: skip
    """Apply every step once on a fresh database: (wall seconds, failure or None)."""
    dbname = "tp_run"
    create_database(admin, dbname, part.template, copy=part.copy_files)
    admin.execute("CHECKPOINT")  # the copy's writes are not charged to the tool
    target = Target(pg.bindir, pg.port, pg.password, dbname)
    command = tool.command(target, directory)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=tool_env(target), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        drop_database(admin, dbname)  # FORCE also ends the tool's sessions on the server
        return RUN_TIMEOUT, f"still running after {RUN_TIMEOUT} s: killed (a hang?)"
    elapsed = time.perf_counter() - started
    failure = None
    if done.returncode != 0:
        failure = f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    elif (found := tables_present(pg, dbname, part.pattern)) != part.expected:
        failure = f"only {found} of {part.expected} tables after the run"
    drop_database(admin, dbname)
    return elapsed, failure


def measure_part(pg: LocalPostgres, admin: psycopg.Connection[Any], tools: list[Tool],
                 part: Part, runs: int) -> dict[str, Timing]:  # fmt: skip
    timings = {tool.name: Timing() for tool in tools}
    with tempfile.TemporaryDirectory(prefix="tp-") as tmp:
        directories: dict[str, Path] = {}
        for tool in tools:
            directories[tool.name] = Path(tmp) / str(len(directories)) / "migrations"
            directories[tool.name].mkdir(parents=True)
            tool.write(directories[tool.name], part.steps)
        for _ in range(runs):  # round-robin: drift of the machine spreads over every tool
            for tool in tools:
                elapsed, failure = apply_once(pg, admin, tool, part, directories[tool.name])
                timing = timings[tool.name]
                if failure:
                    timing.failures.append(failure)
                else:
                    timing.seconds.append(elapsed)
    return timings


def build_big_template(pg: LocalPostgres, admin: psycopg.Connection[Any], gigabytes: float) -> str:
    """Five tables of ~equal size adding up to about `gigabytes` (rows of ~110 bytes)."""
    create_database(admin, BIG_TEMPLATE)
    rows = max(1000, int(gigabytes * 1024**3 / 110 / BIG_TABLES))
    with psycopg.connect(pg.url(BIG_TEMPLATE), autocommit=True) as conn:
        for j in range(BIG_TABLES):
            conn.execute(
                f"CREATE TABLE b{j} (id bigint PRIMARY KEY, a int NOT NULL, b int, c text)"
            )
            conn.execute(
                f"INSERT INTO b{j} SELECT g, g %% 100000, g %% 7, md5(g::text)"
                " FROM generate_series(1, %s) g",
                [rows],
            )
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        row = size.fetchone()
    return f"{BIG_TABLES} tables × {rows:,} rows, database size {row[0] if row else '?'}"


# --- round trips -----------------------------------------------------------------------------

# A client message that waits for the server: Sync closes a batch of extended-protocol
# messages (one pipeline), Query is one simple-protocol query.
ROUND_TRIP = re.compile(r"^F\t\d+\t(Sync|Query)\b", re.MULTILINE)


def round_trips_per_migration(pg: LocalPostgres, admin: psycopg.Connection[Any]) -> float:
    """migrate-safe's engine applying the first eight small steps on a connection whose
    protocol libpq traces: the client's Sync and Query messages, per migration."""
    create_database(admin, "tp_trips")
    with tempfile.TemporaryDirectory(prefix="tp-trips-") as tmp:
        directory = Path(tmp) / "migrations"
        directory.mkdir()
        migrate_safe().write(directory, small_steps(8))
        migrations = scan_directory(directory).migrations()
        trace = Path(tmp) / "trace.txt"
        with psycopg.connect(pg.url("tp_trips"), autocommit=True) as conn, trace.open("w") as out:
            ledger = Ledger(conn, "migrate_safe")
            ledger.ensure()
            report = Reporter("apply", Path(tmp) / "logs", Redactor(), quiet=True)
            engine = Engine(conn, ledger, ApplyPolicy(), report)
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
            for migration in migrations:
                engine.apply(migration)
            conn.pgconn.untrace()
        count = len(ROUND_TRIP.findall(trace.read_text()))
    drop_database(admin, "tp_trips")
    return count / len(migrations)


# --- one 20 MiB migration file -------------------------------------------------------------

BIG_FILE_ROWS = 200_000  # 20,866,725 bytes
BASE_FILE_ROWS = 100
ITEMS_TABLE = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2),"
    " note text);"
)


def write_items(directory: Path, rows: int) -> int:
    """001 creates the table, 002 inserts `rows` rows in one INSERT; returns 002's size."""
    directory.mkdir(parents=True)
    values = (
        f"({i}, 'item number {i:07d} of the catalogue', {i % 100000}.{i % 100:02d}, "
        f"'loaded by the bulk migration; row {i:07d}')"
        for i in range(1, rows + 1)
    )
    (directory / "001_items.up.sql").write_text(ITEMS_TABLE + "\n")
    insert = directory / "002_bulk.up.sql"
    insert.write_text(
        "INSERT INTO items (id, name, amount, note) VALUES\n" + ",\n".join(values) + ";\n"
    )
    return insert.stat().st_size


def apply_insert(pg: LocalPostgres, admin: psycopg.Connection[Any],
                 directory: Path) -> tuple[float, float]:  # fmt: skip
    """(peak RSS in MiB, CPU seconds) of `apply` of the INSERT onto a database at version 1."""
    create_database(admin, "tp_bigfile")
    target = Target(pg.bindir, pg.port, pg.password, "tp_bigfile")
    command = migrate_safe("apply", "--skip-preflight", "--allow-missing-down").command(
        target, directory
    )
    subprocess.run([*command, "--to", "1"], env=tool_env(target), check=True,
                   capture_output=True)  # fmt: skip
    timed = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *command], env=tool_env(target),
                           check=True, capture_output=True, text=True)  # fmt: skip
    drop_database(admin, "tp_bigfile")
    kib, user, system = timed.stderr.split()[-3:]
    return int(kib) / 1024, float(user) + float(system)


def big_file(pg: LocalPostgres, admin: psycopg.Connection[Any], runs: int) -> None:
    """apply's peak RSS on one 20 MiB INSERT against its base, the same command on a 100-row
    INSERT: the goal is base + 2 × the file."""
    compile_migrate_safe()
    with tempfile.TemporaryDirectory(prefix="tp-bigfile-") as tmp:
        size = write_items(Path(tmp) / "big" / "migrations", BIG_FILE_ROWS)
        write_items(Path(tmp) / "base" / "migrations", BASE_FILE_ROWS)
        measured: dict[str, list[tuple[float, float]]] = {"base": [], "big": []}
        for _ in range(runs):  # alternately, so that drift of the machine hits both
            for label, found in measured.items():
                found.append(apply_insert(pg, admin, Path(tmp) / label / "migrations"))
    mib = size / 1024**2
    base = median([rss for rss, _ in measured["base"]])
    peak = median([rss for rss, _ in measured["big"]])
    goal = base + 2 * mib
    print(f"\n### `apply --skip-preflight` of one {mib:.1f} MiB INSERT ({runs} runs)\n")
    rows = [
        [label, f"{median([rss for rss, _ in found]):.1f}",
         f"{max(rss for rss, _ in found):.1f}", f"{median([cpu for _, cpu in found]):.2f}"]
        for label, found in (("100-row INSERT (the base)", measured["base"]),
                             (f"{BIG_FILE_ROWS:,}-row INSERT", measured["big"]))
    ]  # fmt: skip
    print(table(["file", "median peak RSS MiB", "max MiB", "median CPU s"], rows))
    verdict = "met" if peak <= goal else "MISSED"
    print(f"\nGoal (peak ≤ base + 2 × the file = {goal:.1f} MiB): {verdict} — {peak:.1f} MiB, "
          f"base + {(peak - base) / mib:.2f} × the file")  # fmt: skip


# --- the tools, the profile and the report ------------------------------------------------


def tools(smoke: bool, wanted: list[str]) -> tuple[list[Tool], list[str]]:
    candidates = [
        psql_per_file(),
        psql_single(),
        *([] if smoke else peers()),
        migrate_safe("migrate-safe apply --skip-preflight", "--skip-preflight"),
        migrate_safe("migrate-safe apply (with preflight)"),
    ]
    notes = [f"{t.name}: {t.missing}" for t in candidates if t.missing]
    chosen = [t for t in candidates if not t.missing]
    if wanted:
        chosen = [t for t in chosen if t.name.startswith("psql, one") or
                  any(w in t.name for w in wanted)]  # fmt: skip
    return chosen, notes


def rows_for(timings: dict[str, Timing], count: int) -> list[list[object]]:
    baseline = median(timings[psql_per_file().name].seconds)
    rows: list[list[object]] = []
    for name, timing in timings.items():
        if not timing.seconds:
            rows.append([name, "failed", "—", "—", "—", "0"])
            continue
        value = median(timing.seconds)
        ok = f"{len(timing.seconds)}/{len(timing.seconds) + len(timing.failures)}"
        rows.append([name, f"{value:.3f}", f"{min(timing.seconds):.3f}",
                     f"{value / baseline:.2f}×", f"{count / value:,.0f}", ok])  # fmt: skip
    return rows


HEADERS = ["tool", "median s", "best s", "ratio to psql per file", "migrations/s", "runs ok"]


def verdict(timings: dict[str, Timing]) -> str:
    ours = median(timings["migrate-safe apply --skip-preflight"].seconds)
    baseline = median(timings[psql_per_file().name].seconds)
    peer_times = {
        n: median(t.seconds) for n, t in timings.items()
        if t.seconds and not n.startswith(("psql", "migrate-safe"))
    }  # fmt: skip
    slower_peers = [n for n, v in peer_times.items() if v <= ours]
    ratio_ok = ours <= 1.3 * baseline
    faster = not slower_peers
    return (
        f"Goal (≤ 1.3× psql per file and faster than every peer): "
        f"{'MET' if ratio_ok and faster else 'MISSED'} — {ours / baseline:.2f}× psql per file; "
        + (
            "faster than every measured peer"
            if faster
            else f"not faster than {', '.join(slower_peers)}"
        )
    )


PROFILED = [
    ("migrate-safe apply --skip-preflight", ("--skip-preflight",)),
    ("migrate-safe apply (with preflight)", ()),
]


def profile(pg: LocalPostgres, admin: psycopg.Connection[Any], part: Part, output: Path) -> str:
    """migrate-safe's runs of part 1 under pyinstrument, as text, for the next optimisation."""
    home = cached_tool_dir("pyinstrument", "PYINSTRUMENT_VERSION")
    if home is None:
        return "(no profile: pyinstrument is not installed; bench/peers/install.sh pyinstrument)"
    sections = []
    with tempfile.TemporaryDirectory(prefix="tp-profile-") as tmp:
        for index, (name, flags) in enumerate(PROFILED):
            directory = Path(tmp) / str(index)
            directory.mkdir()
            tool = migrate_safe(name, *flags)
            tool.write(directory, part.steps)
            create_database(admin, "tp_profile", part.template)
            target = Target(pg.bindir, pg.port, pg.password, "tp_profile")
            text = profile_once(tool.command(target, directory)[1:], target, home, Path(tmp))
            sections.append(f"=== {name}, {len(part.steps)} migrations ===\n{text}")
            drop_database(admin, "tp_profile")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n\n".join(sections))
    return f"Profiles of migrate-safe ({len(part.steps)} migrations): {output}"


def profile_once(arguments: list[str], target: Target, home: Path, tmp: Path) -> str:
    report = tmp / "profile.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pyinstrument", "-r", "text", "--no-color", "--no-unicode",
         "-o", str(report), "-m", "migrate_safe", *arguments],
        env={**target.env(), "PYTHONPATH": str(home / "lib")},
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        return f"(profile failed, exit {done.returncode}: {done.stderr.strip()[-300:]})"
    return report.read_text()


def plot(results: list[tuple[Part, dict[str, Timing]]], output: Path) -> str:
    plt = pyplot()
    if plt is None:
        return "(no plot: matplotlib is not installed; bench/peers/install.sh matplotlib)"
    figure, axes_list = plt.subplots(1, len(results), figsize=(7.5 * len(results), 4.8))
    figure.subplots_adjust(wspace=0.75)  # room for the second panel's tool names
    for axes, (part, timings) in zip(
        axes_list if len(results) > 1 else [axes_list], results, strict=True
    ):
        names = [n for n, t in timings.items() if t.seconds]
        values = [median(timings[n].seconds) for n in names]
        colors = ["tab:green" if n.startswith("migrate-safe") else
                  "tab:grey" if n.startswith("psql") else "tab:blue" for n in names]  # fmt: skip
        axes.barh(names[::-1], values[::-1], color=colors[::-1])
        axes.set(xlabel="median seconds, process start included", title=part.title,
                 xlim=(0, max(values) * 1.25))  # fmt: skip
        for y, value in enumerate(values[::-1]):
            axes.text(value, y, f" {value:.2f} s", va="center", fontsize=8)
        axes.grid(True, axis="x", which="both", alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"Plot: {output}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000, help="number of small migrations")
    parser.add_argument("--big-gb", type=float, default=1.0, help="size of part 2 (0: skip it)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--tools", default="", help="comma-separated name fragments")
    parser.add_argument("--profile", action="store_true", help="profile migrate-safe (part 1)")
    parser.add_argument("--plot", type=Path, default=DOCS / "throughput.png")
    parser.add_argument("--smoke", action="store_true", help="40 + 50 tiny migrations, 1 run")
    parser.add_argument("--big-file-runs", type=int, default=0,
                        help="runs of apply on one 20 MiB INSERT (0: skip it)")  # fmt: skip
    args = parser.parse_args()
    if args.smoke:
        args.small, args.big_gb, args.runs, args.big_runs = 40, 0.002, 1, 1
    chosen, notes = tools(args.smoke, [w for w in args.tools.split(",") if w])
    small = Part(f"{args.small:,} small migrations, empty database", small_steps(args.small),
                 "template0", False, r"^t\d+$", math.ceil(args.small / 4))  # fmt: skip
    results: list[tuple[Part, dict[str, Timing]]] = []
    with LocalPostgres() as pg, psycopg.connect(pg.url(), autocommit=True) as admin:
        print(f"## Apply throughput — {machine_line(admin)}\n")
        if args.runs > 0:
            results.append((small, small_part(pg, admin, chosen, small, args)))
        if args.big_file_runs > 0:
            big_file(pg, admin, args.big_file_runs)
        if args.big_gb > 0:
            try:
                results.append(big_part(pg, admin, chosen, args))
            except (psycopg.Error, subprocess.SubprocessError) as error:
                log = pg.logfile.read_text(errors="replace")[-1500:] if pg.logfile.exists() else ""
                print(f"\nPart 2 stopped: {error}\n\nServer log (end):\n\n```\n{log}\n```")
    for note in notes:
        print(f"\nNot measured — {note}")
    if results and not args.smoke:
        print(f"\n{plot(results, args.plot)}")


def small_part(pg: LocalPostgres, admin: psycopg.Connection[Any], chosen: list[Tool],
               small: Part, args: argparse.Namespace) -> dict[str, Timing]:  # fmt: skip
    print("Wall time of one process applying every migration to a fresh database, process")
    print("start included; medians; the ratio is to psql applying each file in its own")
    print("transaction.")
    compile_migrate_safe()
    load_before = os.getloadavg()[0]
    timings = measure_part(pg, admin, chosen, small, args.runs)
    # A shared machine's run queue slows a tool that needs the CPU between round trips
    # more than psql: the load says how far to trust the ratios. Printed now: part 2 may
    # take long.
    load = f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print_part(small, timings, args.runs, f"{load}, {os.cpu_count()} cores")
    trips = round_trips_per_migration(pg, admin)
    print(
        f"Round trips per one-statement migration (libpq protocol trace of migrate-safe's "
        f"engine): {trips:g}; psql per file: 3 (BEGIN, the statement, COMMIT)."
    )
    if args.profile:
        print(f"\n{profile(pg, admin, small, DOCS / 'throughput-profile.txt')}", flush=True)
    return timings


def big_part(pg: LocalPostgres, admin: psycopg.Connection[Any], chosen: list[Tool],
             args: argparse.Namespace) -> tuple[Part, dict[str, Timing]]:  # fmt: skip
    note = build_big_template(pg, admin, args.big_gb)
    big = Part(f"50 migrations over {args.big_gb:g} GB", big_steps(), BIG_TEMPLATE,
               True, r"^b\d+(_audit)?$", 2 * BIG_TABLES)  # fmt: skip
    # One transaction cannot hold CREATE INDEX CONCURRENTLY: psql -1 has no floor here.
    in_steps = [t for t in chosen if t.name != psql_single().name]
    timings = measure_part(pg, admin, in_steps, big, args.big_runs)
    print_part(big, timings, args.big_runs, note)
    return big, timings


def print_part(part: Part, timings: dict[str, Timing], runs: int, note: str) -> None:
    print(f"\n### {part.title} ({runs} runs)\n")
    if note:
        print(f"{note}.\n")
    print(table(HEADERS, rows_for(timings, len(part.steps))))
    print()
    if "migrate-safe apply --skip-preflight" in timings and part.template == "template0":
        print(verdict(timings))
    failures = {n: t.failures[0] for n, t in timings.items() if t.failures}
    for name, failure in failures.items():
        print(f"\n- {name} failed a run: `{' '.join(failure.split())[:300]}`")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
