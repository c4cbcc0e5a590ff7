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

CATALOG = """
DO $$
BEGIN
    FOR i IN 1..%(tables)s LOOP
        EXECUTE format('CREATE TABLE t%%s (id int PRIMARY KEY, parent int, name text NOT NULL'
                       ' DEFAULT ''x'', created timestamptz DEFAULT now())', i);
    END LOOP;
    FOR i IN 2..%(fks)s + 1 LOOP
        EXECUTE format('ALTER TABLE t%%s ADD CONSTRAINT t%%s_parent_fk FOREIGN KEY (parent)'
                       ' REFERENCES t%%s (id)', i, i, i - 1);
    END LOOP;
END $$;
"""

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
    with LocalPostgres() as pg, psycopg.connect(pg.url(), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(CATALOG % {"tables": args.tables, "fks": args.fks})
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
