"""Zero-downtime under load: what the application sees while each tool migrates a busy table.

    .venv/bin/python bench/zero_downtime.py                # every installed tool, 3 runs
    .venv/bin/python bench/zero_downtime.py --smoke        # seconds; what tests/bench checks
    .venv/bin/python bench/zero_downtime.py --tools psql,migrate-safe --runs 1

The scenario, the same for every tool on one PostgreSQL: pgbench runs an application workload
(a read and a write on `accounts`) at a fixed rate; at --reader-start a reader opens a
transaction that reads `accounts` and stays open --reader-seconds; at --migrate-at the tool
applies two migrations: ADD COLUMN with a constant default, then CREATE INDEX (CONCURRENTLY in a
no-transaction file for migrate-safe, as its users write it; the plain form for the others).

Latency is pgbench's per-transaction latency under --rate, measured from each transaction's
scheduled start, so a stalled queue counts for every transaction it delays. Prints Markdown
tables (medians of --runs) and writes docs/benchmarks/zero_downtime.png when matplotlib is there.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from benchlib import DOCS, create_database, drop_database, machine_line, median, pyplot, table
from peer_tools import Step, Target, Tool, migrate_safe, peers, psql_per_file, with_flags

from migrate_safe.localpg import LocalPostgres, program_major

TEMPLATE = "zd_template"

WORKLOAD = """\\set aid random(1, {rows})
SELECT balance, owner FROM accounts WHERE id = :aid;
UPDATE accounts SET balance = balance + 1 WHERE id = :aid;
"""

ADD_NOTE = Step(
    1, "add_note",
    "ALTER TABLE accounts ADD COLUMN note text DEFAULT 'x';",
    "ALTER TABLE accounts DROP COLUMN note;",
)  # fmt: skip
NAIVE_STEPS = [
    ADD_NOTE,
    Step(2, "index_owner", "CREATE INDEX accounts_owner_idx ON accounts (owner);",
         "DROP INDEX accounts_owner_idx;"),
]  # fmt: skip
SAFE_STEPS = [
    ADD_NOTE,
    Step(2, "index_owner", "CREATE INDEX CONCURRENTLY accounts_owner_idx ON accounts (owner);",
         "DROP INDEX CONCURRENTLY accounts_owner_idx;", no_transaction=True),
]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    rows: int
    clients: int
    rate: int
    duration: float
    reader_start: float
    reader_seconds: float
    migrate_at: float
    warmup: float = 2.0  # connections and caches settle; left out of the statistics


@dataclass
class Run:
    """One tool, one run: the application's view and the migration's outcome."""

    tool: str
    latencies: list[float] = field(default_factory=list)  # seconds, by scheduled start
    starts: list[float] = field(default_factory=list)  # scheduled start, s since pgbench began
    completions: list[float] = field(default_factory=list)
    failed: int = 0
    exit_code: int | None = None
    migration_seconds: float = 0.0
    completed: bool = False
    stderr: str = ""

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(q * 10) - 1]

    def slow(self, limit: float = 1.0) -> int:
        return sum(latency > limit for latency in self.latencies)

    def zero_seconds(self, scenario: Scenario) -> int:
        """Whole seconds of the run in which not one transaction completed."""
        first, last = int(scenario.warmup), int(scenario.duration) - 1
        busy = {int(t) for t in self.completions}
        return sum(second not in busy for second in range(first, last))


# --- the pieces of one run ----------------------------------------------------------------


def prepare_template(admin: psycopg.Connection[Any], pg: LocalPostgres, rows: int) -> None:
    create_database(admin, TEMPLATE)
    with psycopg.connect(pg.url(TEMPLATE), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0,"
            " owner text NOT NULL)"
        )
        conn.execute(
            "INSERT INTO accounts SELECT g, 0, 'owner ' || g %% 1000 FROM generate_series(1, %s) g",
            [rows],
        )
        conn.execute("VACUUM ANALYZE accounts")


def start_pgbench(
    pg: LocalPostgres, target: Target, s: Scenario, work: Path
) -> subprocess.Popen[str]:
    script = work / "workload.sql"
    script.write_text(WORKLOAD.format(rows=s.rows))
    # pgbench logs each failure's kind from 15 on; 14's (the client the 13 and 14 servers
    # get) has no such option.
    pgbench_major = program_major(Path(pg.bin("pgbench"))) or 0
    detailed = ["--failures-detailed"] if pgbench_major >= 15 else []
    command = [
        pg.bin("pgbench"), "-n", "-f", str(script), "-c", str(s.clients), "-j", "2",
        "-R", str(s.rate), "-T", str(round(s.duration)), "-l",
        "--log-prefix", str(work / "pgbench"), *detailed,
        "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", target.dbname,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=target.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def hold_reader(dsn: str, start_at: float, hold: float) -> None:
    """The long transaction: a report that reads `accounts` and keeps its lock while it works."""
    with psycopg.connect(dsn, application_name="bench-long-reader") as conn:
        time.sleep(max(0.0, start_at - time.time()))
        conn.execute("SELECT count(*) FROM accounts").fetchone()
        time.sleep(hold)
        conn.rollback()


def run_migration(tool: Tool, target: Target, directory: Path, run: Run, budget: float) -> None:
    started = time.monotonic()
    try:
        done = subprocess.run(
            tool.command(target, directory), env=target.env(), capture_output=True,
            text=True, timeout=budget, check=False,
        )  # fmt: skip
        run.exit_code, run.stderr = done.returncode, (done.stderr + done.stdout)[-4000:]
    except subprocess.TimeoutExpired:
        run.exit_code, run.stderr = None, f"killed after {budget:.0f} s"
    run.migration_seconds = time.monotonic() - started


def read_pgbench_logs(work: Path, began: float, s: Scenario, run: Run) -> None:
    """Per-transaction logs: client, number, latency µs, script, epoch s, µs [, lag µs]."""
    for log in sorted(work.glob("pgbench*")):
        if log.suffix == ".sql":
            continue
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) < 6 or not parts[2].isdigit():
                # "failed", or "serialization"/"deadlock" under --failures-detailed
                run.failed += len(parts) >= 6 and parts[2] != "skipped"
                continue
            finished = int(parts[4]) + int(parts[5]) / 1e6 - began
            latency = int(parts[2]) / 1e6
            if finished - latency >= s.warmup:
                run.latencies.append(latency)
                run.starts.append(finished - latency)
            run.completions.append(finished)


def migration_completed(pg: LocalPostgres, dbname: str) -> bool:
    with psycopg.connect(pg.url(dbname), autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM information_schema.columns"
            "   WHERE table_name = 'accounts' AND column_name = 'note')"
            " AND EXISTS (SELECT FROM pg_index WHERE indexrelid ="
            "   to_regclass('accounts_owner_idx') AND indisvalid)"
        ).fetchone()
    return bool(row and row[0])


def measure(pg: LocalPostgres, admin: psycopg.Connection[Any], tool: Tool, s: Scenario) -> Run:
    run = Run(tool.name)
    dbname = "zd_run"
    create_database(admin, dbname, TEMPLATE)
    target = Target(pg.bindir, pg.port, pg.password, dbname)
    with tempfile.TemporaryDirectory(prefix="zd-") as tmp:
        work = Path(tmp)
        migrations = work / "migrations"
        migrations.mkdir()
        tool.write(migrations, SAFE_STEPS if tool.name.startswith("migrate-safe") else NAIVE_STEPS)
        began = time.time()
        bench = start_pgbench(pg, target, s, work)
        reader = threading.Thread(
            target=hold_reader,
            args=(pg.url(dbname), began + s.reader_start, s.reader_seconds),
            daemon=True,
        )
        reader.start()
        time.sleep(max(0.0, began + s.migrate_at - time.time()))
        run_migration(tool, target, migrations, run, budget=s.duration - s.migrate_at + 60)
        _, errors = bench.communicate(timeout=s.duration + 60)
        reader.join(timeout=s.reader_seconds + 30)
        run.failed += errors.count("aborted")
        read_pgbench_logs(work, began, s, run)
    run.completed = migration_completed(pg, dbname)
    drop_database(admin, dbname)
    return run


# --- the tools and the report -----------------------------------------------------------


def with_lock_timeout(tool: Tool) -> Tool:
    """psql as a careful user runs it: SET lock_timeout = '2s' first, and no retry."""

    def write(directory: Path, steps: list[Step]) -> None:
        tool.write(directory, steps)
        driver = directory / "per_file.psql"
        driver.write_text("SET lock_timeout = '2s';\n" + driver.read_text())

    return Tool("psql, lock_timeout=2s", write, tool.argv)


def tools(smoke: bool, wanted: list[str]) -> tuple[list[Tool], list[str]]:
    """The tools to measure, and a note for each that is left out."""
    naive = psql_per_file()
    candidates = [
        Tool("psql (naive)", naive.write, naive.argv),
        with_lock_timeout(naive),
        *([] if smoke else peers()),
        migrate_safe("migrate-safe", "--skip-preflight"),
        migrate_safe("migrate-safe + preflight", "--long-transaction-seconds", "1"),
        with_flags(migrate_safe(), "migrate-safe, quiet-wait 5s", "--skip-preflight",
                   "--quiet-wait", "5s"),
    ]  # fmt: skip
    if smoke:
        candidates = [candidates[0], candidates[2], candidates[3]]
    notes = [f"{t.name}: {t.missing}" for t in candidates if t.missing]
    chosen = [t for t in candidates if not t.missing]
    if wanted:
        chosen = [t for t in chosen if any(w in t.name for w in wanted)]
    return chosen, notes


def summary_rows(runs: dict[str, list[Run]], s: Scenario) -> list[list[object]]:
    naive_max = median([max(r.latencies, default=0) for r in runs.get("psql (naive)", [])])
    rows: list[list[object]] = []
    for name, measured in runs.items():
        worst = median([max(r.latencies, default=float("nan")) for r in measured])
        completed = sum(r.completed for r in measured)
        codes = sorted({str(r.exit_code) for r in measured})
        rows.append([
            name,
            f"{completed}/{len(measured)}",
            ",".join(codes),
            f"{median([r.migration_seconds for r in measured]):.1f}",
            f"{median([r.percentile(50) for r in measured]) * 1000:.1f}",
            f"{median([r.percentile(99) for r in measured]) * 1000:.0f}",
            f"{worst:.3f}",
            f"{median([r.slow() for r in measured]):.0f}",
            f"{median([r.zero_seconds(s) for r in measured]):.0f}",
            f"{median([r.failed for r in measured]):.0f}",
            f"{naive_max / worst:.1f}×" if worst > 0 and naive_max == naive_max else "—",
        ])  # fmt: skip
    return rows


HEADERS = [
    "tool", "migration completed", "exit code", "migration s", "app p50 ms", "app p99 ms",
    "app max s", "txns > 1 s", "seconds with 0 txns", "failed txns", "max: naive / tool",
]  # fmt: skip


def verdict(runs: dict[str, list[Run]]) -> str:
    ours, naive = runs.get("migrate-safe"), runs.get("psql (naive)")
    if not ours or not naive:
        return "goal not evaluated: psql (naive) and migrate-safe both need to run"
    worst = median([max(r.latencies, default=float("nan")) for r in ours])
    ratio = median([max(r.latencies, default=0) for r in naive]) / worst
    met = all(r.completed for r in ours) and worst <= 0.5 and all(r.slow() == 0 for r in ours)
    return (
        f"Goal (migration completed, app max ≤ 0.5 s, no transaction > 1 s, ratio ≥ 25×): "
        f"{'MET' if met and ratio >= 25 else 'MISSED'} — max {worst:.3f} s, ratio {ratio:.0f}×"
    )


STYLE = {  # the tools the reader compares stand out; peers that behave alike stay grey
    "psql (naive)": {"color": "tab:red", "linewidth": 1.8},
    "psql, lock_timeout=2s": {"color": "tab:orange", "linewidth": 1.5},
    "migrate-safe": {"color": "tab:green", "linewidth": 2.2},
    "migrate-safe + preflight": {"color": "tab:cyan", "linewidth": 1.2},
    "migrate-safe, quiet-wait 5s": {"color": "tab:purple", "linewidth": 1.5},
}
PEER_STYLE = {"color": "grey", "linewidth": 0.8, "alpha": 0.6, "linestyle": "--"}


def worst_per_bucket(run: Run, width: float = 0.25) -> tuple[list[float], list[float]]:
    """The worst latency of the transactions scheduled in each `width`-second bucket."""
    buckets: dict[int, float] = {}
    for start, latency in zip(run.starts, run.latencies, strict=True):
        key = int(start / width)
        buckets[key] = max(buckets.get(key, 0.0), latency)
    keys = sorted(buckets)
    return [k * width for k in keys], [buckets[k] for k in keys]


def plot(runs: dict[str, list[Run]], s: Scenario, output: Path) -> str:
    plt = pyplot()
    if plt is None:
        return "(no plot: matplotlib is not installed; bench/peers/install.sh matplotlib)"
    figure, axes = plt.subplots(figsize=(11, 5.5))
    peer_names = [name for name in runs if name not in STYLE]
    for name, measured in runs.items():
        label = name
        if name in peer_names:
            label = f"peers: {', '.join(peer_names)}" if name == peer_names[0] else None
        x, y = worst_per_bucket(measured[0])
        axes.plot(x, y, label=label, **STYLE.get(name, PEER_STYLE))
    end = s.reader_start + s.reader_seconds
    axes.axvspan(s.reader_start, end, color="grey", alpha=0.12, label="long reader open")
    axes.axvline(s.migrate_at, color="black", linestyle=":", linewidth=0.8, label="migration")
    axes.set(yscale="log", xlabel="scheduled start of the transaction (s)",
             ylabel="worst latency per 250 ms (s, log)",
             title=f"Application latency while migrating accounts ({s.rate} tps, "
                   f"{s.clients} clients, first run of each tool)")  # fmt: skip
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curves
    axes.grid(True, which="both", alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"Plot: {output}"


def scenario(args: argparse.Namespace) -> Scenario:
    if args.smoke:
        return Scenario(10_000, 4, 100, 6, 1.0, 3.0, 2.5, warmup=0.5)
    return Scenario(args.rows, args.clients, args.rate, args.duration, args.reader_start,
                    args.reader_seconds, args.migrate_at)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=int, default=400, help="application transactions/s")
    parser.add_argument("--duration", type=float, default=35.0, help="seconds of load per run")
    parser.add_argument("--reader-start", type=float, default=10.0)
    parser.add_argument("--reader-seconds", type=float, default=15.0)
    parser.add_argument("--migrate-at", type=float, default=12.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="", help="comma-separated name fragments")
    parser.add_argument("--plot", type=Path, default=DOCS / "zero_downtime.png")
    parser.add_argument("--smoke", action="store_true", help="6 s runs, psql and migrate-safe")
    args = parser.parse_args()
    s = scenario(args)
    runs_per_tool = 1 if args.smoke else args.runs
    chosen, notes = tools(args.smoke, [w for w in args.tools.split(",") if w])
    runs: dict[str, list[Run]] = {t.name: [] for t in chosen}
    with LocalPostgres() as pg, psycopg.connect(pg.url(), autocommit=True) as admin:
        prepare_template(admin, pg, s.rows)
        header = machine_line(admin)
        for _ in range(runs_per_tool):  # round-robin, so drift spreads over every tool
            for tool in chosen:
                runs[tool.name].append(measure(pg, admin, tool, s))
    report(runs, s, header, notes, runs_per_tool)
    print()
    print(plot(runs, s, args.plot) if not args.smoke else "(smoke: no plot)")


def report(
    runs: dict[str, list[Run]], s: Scenario, header: str, notes: list[str], count: int
) -> None:
    print(f"## Zero-downtime under load — {header}")
    print()
    print(
        f"`accounts`: {s.rows:,} rows; pgbench {s.clients} clients at {s.rate} tps for "
        f"{s.duration:.0f} s (a read and an update per transaction); a reader holds `accounts` "
        f"from t={s.reader_start:g} s to t={s.reader_start + s.reader_seconds:g} s; the "
        f"migration starts at t={s.migrate_at:g} s. Medians of {count} run(s); latency from "
        f"each transaction's scheduled start; the first {s.warmup:g} s are left out."
    )
    print()
    print(table(HEADERS, summary_rows(runs, s)))
    print()
    print(verdict(runs))
    for note in notes:
        print(f"\nNot measured — {note}")
    failures = {r.tool: r.stderr for rs in runs.values() for r in rs if r.exit_code}
    if failures:
        print("\nHow the migrations that did not exit 0 ended:\n")
        for name, text in failures.items():
            print(f"- {name}: `{why_it_failed(text)}`")


def why_it_failed(output: str) -> str:
    """The telling line of a failed tool's output: a failed check or an error, else the last."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith("✗") or "ERROR" in line.upper()]
    return " ".join((telling or lines[-1:])[:2])[:300]


if __name__ == "__main__":
    main()
