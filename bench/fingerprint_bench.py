"""Fingerprint and postflight at catalog scale, side by side with pg_dump --schema-only.

    .venv/bin/python bench/fingerprint_bench.py            # 10,000 tables / 5,000 FKs, 10M rows
    .venv/bin/python bench/fingerprint_bench.py --smoke    # seconds; what .ci/run checks

Prints Markdown tables: medians of several runs, the ratio, and whether each tool gave the same
hash on every run (pg_dump's output carries a random \\restrict key on recent versions). The
fingerprint is timed twice: `schema_hash`, the hash alone, for a caller that only compares or
records it (what `pg_dump | sha256sum` gives too), and `fingerprint`, which reads every object's
line as well, for the JSON output and a diff. Beside the wall-clock time, the CPU-seconds each
tool used, client and server together (read from /proc: the fingerprint's backend; pg_dump's
backend, reaped by the postmaster): on a loaded machine the wall clock measures the load as much
as the tool, the CPU-seconds much less. The load average at the start and at the end says how
loaded the machine was.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from migrate_safe.backup import client_env
from migrate_safe.fingerprint import fingerprint, schema_hash
from migrate_safe.health import count_orphans
from migrate_safe.localpg import LocalPostgres

TABLE = (
    "CREATE TABLE t{i} (id int PRIMARY KEY, parent int, name text NOT NULL DEFAULT 'x',"
    " created timestamptz DEFAULT now());"
)
FOREIGN_KEY = (
    "ALTER TABLE t{i} ADD CONSTRAINT t{i}_parent_fk FOREIGN KEY (parent) REFERENCES t{parent} (id);"
)
# Client backends other than the fingerprint's own: pg_dump's, until it has ended.
DUMP_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
BATCH = 500  # statements per transaction: each table's locks are held until commit
# The catalogs the build filled, vacuumed and analysed before anything is timed: otherwise
# autovacuum does it during the first timed runs, whichever tool they belong to.
SETTLE = (
    "VACUUM ANALYZE pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_type,"
    " pg_catalog.pg_attrdef, pg_catalog.pg_constraint, pg_catalog.pg_index,"
    " pg_catalog.pg_depend, pg_catalog.pg_shdepend"
)


def build_catalog(conn: psycopg.Connection[tuple[object, ...]], tables: int, fks: int) -> None:
    statements = [TABLE.format(i=i) for i in range(1, tables + 1)]
    statements += [FOREIGN_KEY.format(i=i, parent=i - 1) for i in range(2, fks + 2)]
    for start in range(0, len(statements), BATCH):
        conn.execute("".join(statements[start : start + BATCH]).encode())


ORPHANS = """
CREATE TABLE customers (id bigint PRIMARY KEY);
INSERT INTO customers SELECT g FROM generate_series(1, %(parents)s) g;
CREATE TABLE orders (id bigint, customer_id bigint);
INSERT INTO orders SELECT g, 1 + g %% %(parents)s FROM generate_series(1, %(rows)s) g;
INSERT INTO orders VALUES (-1, -42);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)
    REFERENCES customers (id) NOT VALID;
ANALYZE customers, orders;
"""


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and of the children it has reaped (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(ticks) for ticks in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Timing:
    wall: float  # median seconds
    cpu: float  # median CPU-seconds, client and server
    results: set[str]


def timed(action: Callable[[], str], cpu: Callable[[], float], runs: int) -> Timing:
    durations, cpus, results = [], [], set()
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), cpu()
        results.add(action())
        durations.append(time.perf_counter() - started)
        cpus.append(cpu() - cpu_started)
    return Timing(statistics.median(durations), statistics.median(cpus), results)


def load() -> str:
    return " / ".join(f"{average:.1f}" for average in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--fks", type=int, default=5_000)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows behind the orphan scan")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 2 runs")
    args = parser.parse_args()
    if args.smoke:
        args.tables, args.fks, args.rows, args.runs = 200, 100, 100_000, 2
    # pg_dump locks every table it dumps in one transaction: room for 10,000 of them.
    server = LocalPostgres(settings={"max_locks_per_transaction": "1024"})
    load_at_start = load()
    with server as pg, psycopg.connect(pg.url(), autocommit=True) as conn:
        started = time.perf_counter()
        build_catalog(conn, args.tables, args.fks)
        conn.execute(SETTLE)
        setup = time.perf_counter() - started
        dsn, env = client_env(pg.url())
        backend = conn.info.backend_pid
        postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])

        def ours() -> str:
            return schema_hash(conn, "migrate_safe")

        def with_lines() -> str:
            return fingerprint(conn, "migrate_safe").hash

        def pg_dump() -> str:
            dump = subprocess.run(
                [pg.bin("pg_dump"), "--schema-only", "--dbname", dsn],
                env=env, capture_output=True, check=True,
            )  # fmt: skip
            # Its backend's CPU counts once the postmaster has reaped it: wait for it to end.
            while conn.execute(DUMP_BACKENDS).fetchone() != (0,):
                pass
            return hashlib.sha256(dump.stdout).hexdigest()

        server_major = conn.info.server_version // 10000

        def own_cpu() -> float:
            return cpu_seconds(backend) + own_cpu_seconds(resource.RUSAGE_SELF)

        mine = timed(ours, own_cpu, args.runs)
        lines = timed(with_lines, own_cpu, args.runs)
        dump = timed(
            pg_dump,
            lambda: cpu_seconds(postmaster) + own_cpu_seconds(resource.RUSAGE_CHILDREN),
            args.runs,
        )
        conn.execute(ORPHANS % {"rows": args.rows, "parents": max(1, args.rows // 10)})
        orphans = timed(
            lambda: str(count_orphans(conn, "orders", "orders_customer_fk")),
            lambda: cpu_seconds(backend),
            args.runs,
        )
    print(
        f"## Fingerprint at scale — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"PostgreSQL {server_major}, {args.runs} runs, medians"
    )
    print()
    print(
        f"Catalog: {args.tables:,} tables, {args.fks:,} foreign keys (built and its catalogs"
        f" vacuumed in {setup:.1f} s)."
    )
    print(f"Load average (1 / 5 / 15 min): {load_at_start} at the start, {load()} at the end.")
    print()
    print("| tool | median s | same hash every run | ratio to migrate-safe | CPU s | CPU ratio |")
    print("|---|---:|---|---:|---:|---:|")
    print(
        f"| migrate-safe fingerprint (schema_hash) | {mine.wall:.3f} | {len(mine.results) == 1} "
        f"| 1.0× | {mine.cpu:.2f} | 1.0× |"
    )
    print(
        f"| the same with every line (fingerprint) | {lines.wall:.3f} "
        f"| {lines.results == mine.results} (same hash as schema_hash) "
        f"| {lines.wall / mine.wall:.1f}× | {lines.cpu:.2f} | {lines.cpu / mine.cpu:.1f}× |"
    )
    print(
        f"| pg_dump --schema-only \\| sha256sum | {dump.wall:.3f} | {len(dump.results) == 1} "
        f"| {dump.wall / mine.wall:.1f}× slower | {dump.cpu:.2f} "
        f"| {dump.cpu / mine.cpu:.1f}× more |"
    )
    print()
    print("## Postflight orphan scan (one anti-join behind a NOT VALID foreign key)")
    print()
    print("| rows | orphans found | median s | server CPU s |")
    print("|---:|---:|---:|---:|")
    print(f"| {args.rows:,} | {orphans.results.pop()} | {orphans.wall:.3f} | {orphans.cpu:.2f} |")


if __name__ == "__main__":
    main()
