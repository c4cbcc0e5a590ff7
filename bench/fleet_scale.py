"""A fleet at scale on devcluster: one DatabaseMigrationSet rolling the eight example migrations
out to 500 databases on one PostgreSQL server.

    .venv/bin/python bench/fleet_scale.py                  # 500 databases, maxParallel 10
    .venv/bin/python bench/fleet_scale.py --members 100    # a smaller fleet
    .venv/bin/python bench/fleet_scale.py --smoke          # 6 databases

One Secret per database (labelled `migrate-safe.dev/database`), one set (canary 1, waves of
25 %, maxParallel 10), the eight migrations of examples/migrations in a ConfigMap. Reports the
time until every member is at the target (checked in each database's ledger too), the
operator's RSS (goal < 250 MiB) and CPU, the API requests per member by verb and resource,
and the largest size the set's status reached (goal < 100 KiB), each with MET / MISSED; then
`kubectl get dbmset -o wide` and the status's census as they are at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from operatorbench import (
    GROUP,
    ROOT,
    SET_PLURAL,
    VERSION,
    Bench,
    Operator,
    bench_cluster,
    create_namespace,
    header,
    job_creations,
    operator_requests,
    progress,
    request_counts,
    requests_table,
    running_operator,
    table,
    verdict,
)

NAMESPACE = "fleet"
MEMBER_LABELS = {"migrate-safe.dev/database": "tenant", "fleet": "bench"}
MIGRATIONS = ROOT / "examples" / "migrations"
TARGET = 8


@dataclass
class Watched:
    """What polling the set (one GET every few seconds) saw during the rollout."""

    largest_status: int = 0  # bytes of the status as JSON
    peak_rss: float = 0.0
    polls: int = 0  # our own GETs of the set, left out of the operator's requests
    finished: bool = False  # Succeeded or Halted before the timeout
    last: dict[str, Any] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--max-parallel", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    parser.add_argument(
        "--postflight",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="members run a postflight Job after the apply (the default)",
    )
    parser.add_argument("--smoke", action="store_true", help="6 databases")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.max_parallel, args.timeout = 6, 3, 600
    databases = [tenant(i).replace("-", "_") for i in range(args.members)]
    with bench_cluster(databases, max_connections=100 + 4 * args.max_parallel) as bench:
        run(args, bench)


def tenant(index: int) -> str:
    return f"tenant-{index:03d}"


def run(args: argparse.Namespace, bench: Bench) -> None:
    create_namespace(bench.core, NAMESPACE)
    bench.core.create_namespaced_config_map(
        NAMESPACE,
        {
            "metadata": {"name": "migrations"},
            "data": {path.name: path.read_text() for path in sorted(MIGRATIONS.glob("*.sql"))},
        },
    )
    for i in range(args.members):
        url = bench.database_url(tenant(i).replace("-", "_"))
        bench.core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": tenant(i), "labels": MEMBER_LABELS},
                "stringData": {"DATABASE_URL": url},
            },
        )
    progress(f"{args.members} databases and Secrets; starting the operator")
    with running_operator(bench) as operator:
        at_zero = operator.rss_mib()
        before = request_counts(bench.api)
        started = time.monotonic()
        create_set(bench, args.max_parallel, args.postflight)
        watched = follow(bench, operator, started, args.timeout)
        took = time.monotonic() - started
        requests = request_counts(bench.api) - before
        requests[("GET", SET_PLURAL, "200")] -= watched.polls
        cpu, rss = operator.cpu_seconds(), operator.rss_mib()
    at_target = ledgers_at_target(bench, args.members)
    listing = bench.kubectl("get", "dbmset", "-n", NAMESPACE, "-o", "wide")
    report(args, (took, at_zero, rss, cpu, at_target), watched, requests, listing)


def create_set(bench: Bench, max_parallel: int, postflight: bool) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigrationSet",
        "metadata": {"name": "tenants"},
        "spec": {
            "template": {
                "source": {"configMaps": [{"name": "migrations"}]},
                "postflight": {"enabled": postflight},
            },
            "members": {"selector": {"matchLabels": {"fleet": "bench"}}},
            "strategy": {"canary": 1, "waveSize": "25%", "maxParallel": max_parallel},
        },
    }
    bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SET_PLURAL, body)


def follow(bench: Bench, operator: Operator, started: float, timeout: float) -> Watched:
    """Poll the set until it Succeeded (or Halted) at its generation, or the timeout; note its
    largest status."""
    watched = Watched()
    while time.monotonic() - started < timeout:
        found = bench.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, SET_PLURAL, "tenants"
        )
        watched.polls += 1
        status = found.get("status") or {}
        watched.largest_status = max(watched.largest_status, len(json.dumps(status)))
        watched.peak_rss = max(watched.peak_rss, operator.rss_mib())
        watched.last = found
        fresh = status.get("observedGeneration") == found["metadata"]["generation"]
        if fresh and status.get("phase") in ("Succeeded", "Halted"):
            watched.finished = True
            return watched
        if int(time.monotonic() - started) % 60 < 5:
            progress(
                f"  {status.get('phase')} {status.get('summary')} wave "
                f"{status.get('wave')} {operator.rss_mib():.0f} MiB"
            )
        time.sleep(5)
    progress(f"the set did not finish in {timeout:.0f}s: reporting where it is")
    return watched


def ledgers_at_target(bench: Bench, members: int) -> int:
    """Members whose own ledger says they are at the target version."""
    count = 0
    for i in range(members):
        with psycopg.connect(bench.pg.url(tenant(i).replace("-", "_"))) as conn:
            if conn.execute("SELECT to_regclass('migrate_safe.applied')").fetchone() == (None,):
                continue  # never migrated
            row = conn.execute("SELECT max(version) FROM migrate_safe.applied").fetchone()
            count += int(row is not None and row[0] == TARGET)
    return count


def report(
    args: argparse.Namespace,
    figures: tuple[float, float, float, float, int],
    watched: Watched,
    requests: Any,
    listing: str,
) -> None:
    took, at_zero, rss, cpu, at_target = figures
    status = watched.last.get("status") or {}
    n = args.members
    per_member = operator_requests(requests) / n
    job_posts, refused = job_creations(requests)
    print(header("A fleet at scale"))
    print()
    print(
        f"{n} databases on one PostgreSQL server, one Secret each; one DatabaseMigrationSet "
        f"(canary 1, waves of 25 %, maxParallel {args.max_parallel}) rolling out the eight "
        "example migrations; every member runs a preflight and an apply Job"
        f"{', then a postflight Job' if args.postflight else ' (postflight disabled)'}, "
        "their pods on the devcluster's node, on the same cores as the operator."
    )
    print()
    rows = [
        (
            "every member at the target",
            f"{status.get('phase')} {status.get('summary')}, ledgers at {TARGET}: {at_target}/{n}",
            f"{n}/{n}",
            verdict(status.get("phase") == "Succeeded" and at_target == n),
        ),
        (
            "total time to all members at target",
            f"{took:.0f} s ({took / n:.2f} s per member)"
            if watched.finished
            else f"not finished: stopped after {took:.0f} s",
            "—",
            "—",
        ),
        (
            "operator peak RSS (polled)",
            f"{watched.peak_rss:.0f} MiB",
            "< 250 MiB",
            verdict(watched.peak_rss < 250),
        ),
        ("operator RSS at 0 / at the end", f"{at_zero:.0f} / {rss:.0f} MiB", "—", "—"),
        ("operator CPU-seconds", f"{cpu:.0f} ({cpu / n:.2f} per member)", "—", "—"),
        (
            "set status, largest",
            f"{watched.largest_status / 1024:.1f} KiB",
            "< 100 KiB",
            verdict(watched.largest_status < 100 * 1024),
        ),
        (
            "API requests per member on the operator's resources (Events: every component's)",
            f"{per_member:.1f}",
            "—",
            "—",
        ),
        (
            "Job POSTs per member (refused as existing)",
            f"{job_posts / n:.2f} ({refused / n:.2f})",
            "—",
            "—",
        ),
    ]
    print(table(["measure", "figure", "goal", "verdict"], rows))
    print()
    print("`kubectl get dbmset -o wide` at the end:")
    print()
    print("```")
    print(listing.rstrip())
    print("```")
    print()
    print("The status's census, members and wave at the end:")
    print()
    print("```json")
    census = {key: status.get(key) for key in ("census", "members", "wave", "summary", "phase")}
    print(json.dumps(census, indent=2))
    print("```")
    print()
    print("API requests per member (all clients):")
    print()
    print(requests_table(requests, n, "member"))


if __name__ == "__main__":
    main()
