"""Fingerprint and postflight at catalog scale, side by side with pg_dump --schema-only.

    .venv/bin/python bench/fingerprint_bench.py            # 10,000 tables / 5,000 FKs, 10M rows
    .venv/bin/python bench/fingerprint_bench.py --smoke    # seconds; what .ci/run checks

Prints Markdown tables: medians of several runs, the ratio, and whether each tool gave the same
hash on every run (pg_dump's output carries a random \\restrict key on recent versions).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from migrate_safe.backup import client_env
from migrate_safe.fingerprint import fingerprint
from migrate_safe.health import count_orphans
from migrate_safe.localpg import LocalPostgres

TABLE = (
    "CREATE TABLE t{i} (id int PRIMARY KEY, parent int, name text NOT NULL DEFAULT 'x',"
    " created timestamptz DEFAULT now());"
)
FOREIGN_KEY = (
    "ALTER TABLE t{i} ADD CONSTRAINT t{i}_parent_fk FOREIGN KEY (parent) REFERENCES t{parent} (id);"
)
BATCH = 500  # statements per transaction: each table's locks are held until commit


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


def timed(action: Callable[[], str], runs: int) -> tuple[float, set[str]]:
    durations, results = [], set()
    for _ in range(runs):
        started = time.perf_counter()
        results.add(action())
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), results


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
    with server as pg, psycopg.connect(pg.url(), autocommit=True) as conn:
        started = time.perf_counter()
        build_catalog(conn, args.tables, args.fks)
        setup = time.perf_counter() - started
        dsn, env = client_env(pg.url())

        def ours() -> str:
            return fingerprint(conn, "migrate_safe").hash

        def pg_dump() -> str:
            dump = subprocess.run(
                [pg.bin("pg_dump"), "--schema-only", "--dbname", dsn],
                env=env, capture_output=True, check=True,
            )  # fmt: skip
            return hashlib.sha256(dump.stdout).hexdigest()

        server_major = conn.info.server_version // 10000
        ours_time, ours_hashes = timed(ours, args.runs)
        dump_time, dump_hashes = timed(pg_dump, args.runs)
        conn.execute(ORPHANS % {"rows": args.rows, "parents": max(1, args.rows // 10)})
        orphan_time, orphan_counts = timed(
            lambda: str(count_orphans(conn, "orders", "orders_customer_fk")), args.runs
        )
    print(
        f"## Fingerprint at scale — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"PostgreSQL {server_major}, {args.runs} runs, medians"
    )
    print()
    print(f"Catalog: {args.tables:,} tables, {args.fks:,} foreign keys (built in {setup:.1f} s).")
    print()
    print("| tool | median s | same hash every run | ratio to migrate-safe |")
    print("|---|---:|---|---:|")
    print(f"| migrate-safe fingerprint | {ours_time:.3f} | {len(ours_hashes) == 1} | 1.0× |")
    print(
        f"| pg_dump --schema-only \\| sha256sum | {dump_time:.3f} | {len(dump_hashes) == 1} "
        f"| {dump_time / ours_time:.1f}× slower |"
    )
    print()
    print("## Postflight orphan scan (one anti-join behind a NOT VALID foreign key)")
    print()
    print("| rows | orphans found | median s |")
    print("|---:|---:|---:|")
    print(f"| {args.rows:,} | {orphan_counts.pop()} | {orphan_time:.3f} |")


if __name__ == "__main__":
    main()
