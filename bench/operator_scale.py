"""The operator at scale on devcluster: many DatabaseMigrations across namespaces and databases.

    .venv/bin/python bench/operator_scale.py              # 200 resources, 20 namespaces, 20 DBs
    .venv/bin/python bench/operator_scale.py --smoke      # 4 resources: what .ci/run checks

Measures the time from creation to all Ready, the create-to-first-Job latency (median, p95),
the operator's peak RSS, and the API requests per resource (from the API server's own
apiserver_request_total, by verb and resource). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import devcluster  # noqa: E402
from devcluster import image  # noqa: E402
from migrate_safe.localpg import LocalPostgres  # noqa: E402

GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"


def migrations(index: int) -> dict[str, str]:
    """Three small migrations in a schema of the resource's own, so resources sharing a
    database never touch each other's tables."""
    s = f"app_{index}"
    return {
        "001_schema.up.sql": f"CREATE SCHEMA {s}; CREATE TABLE {s}.a (id int PRIMARY KEY);",
        "001_schema.down.sql": f"DROP SCHEMA {s} CASCADE;",
        "002_b.up.sql": f"CREATE TABLE {s}.b (id int PRIMARY KEY, a int REFERENCES {s}.a);",
        "002_b.down.sql": f"DROP TABLE {s}.b;",
        "003_note.up.sql": f"ALTER TABLE {s}.a ADD COLUMN note text;",
        "003_note.down.sql": f"ALTER TABLE {s}.a DROP COLUMN note;",
    }


def request_counts(api: client.ApiClient) -> Counter[tuple[str, str]]:
    host = api.configuration.host
    response = api.call_api("GET", f"{host}/metrics", header_params={"Accept": "text/plain"})
    text = response.read().decode() if hasattr(response, "read") else str(response.data)
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            resource = labels.get("resource", "") + (
                "/" + labels["subresource"] if labels.get("subresource") else ""
            )
            counts[(labels.get("verb", ""), resource)] += int(sample.value)
    return counts


class FirstJobs(threading.Thread):
    """Watches Jobs in every namespace and notes when each resource's first one appears."""

    def __init__(self, batch: client.BatchV1Api) -> None:
        super().__init__(daemon=True)
        self.batch = batch
        self.seen: dict[tuple[str, str], float] = {}
        self.stop = watch.Watch()

    def run(self) -> None:
        try:
            for event in self.stop.stream(
                self.batch.list_job_for_all_namespaces,
                label_selector="app.kubernetes.io/managed-by=migrate-safe-operator",
            ):
                job = event["object"]
                owner = job.metadata.labels.get("migrate-safe.dev/databasemigration", "")
                self.seen.setdefault((job.metadata.namespace, owner), time.monotonic())
        except Exception:
            return


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--smoke", action="store_true", help="4 resources in 2 namespaces")
    args = parser.parse_args()
    if args.smoke:
        args.resources, args.namespaces, args.databases, args.timeout = 4, 2, 2, 300
    work = Path(tempfile.mkdtemp(prefix="migrate-safe-scale-"))
    with LocalPostgres(settings={"max_connections": "400"}) as pg:
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            for index in range(args.databases):
                admin.execute(f"CREATE DATABASE scale_{index}")
        built = image.ensure_image()
        cluster = devcluster.up(work / "cluster")
        try:
            # Job pods run the project image on the node and reach PostgreSQL through it.
            cluster.load_image(built)
            pg_host = cluster.expose(pg.port)
            run(args, pg, cluster.kubeconfig, work, (built.ref, pg_host))
        finally:
            devcluster.down(work / "cluster")


def run(
    args: argparse.Namespace,
    pg: LocalPostgres,
    kubeconfig: Path,
    work: Path,
    node: tuple[str, str],
) -> None:
    job_image, pg_host = node
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    custom, extensions = client.CustomObjectsApi(api), client.ApiextensionsV1Api(api)
    import yaml

    extensions.create_custom_resource_definition(
        yaml.safe_load((ROOT / "crds" / "databasemigration.yaml").read_text())
    )
    time.sleep(2)  # the CRD becomes Established
    namespaces = [f"scale-{n}" for n in range(args.namespaces)]
    for n, namespace in enumerate(namespaces):
        core.create_namespace({"metadata": {"name": namespace}})
        while not core.list_namespaced_service_account(namespace).items:
            time.sleep(0.2)
        url = psycopg.conninfo.make_conninfo(pg.url(f"scale_{n % args.databases}"), host=pg_host)
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "db"}, "stringData": {"DATABASE_URL": url}}
        )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MIGRATE_SAFE_JOB_IMAGE": job_image,
    }
    with (work / "operator.log").open("wb") as log:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migrate_safe",
                "operator",
                "--standalone",
                "--metrics-port",
                "0",
                "--liveness-port",
                "0",
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        time.sleep(3)  # the operator lists and watches before the first resource arrives
        first_jobs = FirstJobs(batch)
        first_jobs.start()
        before = request_counts(api)
        created: dict[tuple[str, str], float] = {}
        started = time.monotonic()
        for index in range(args.resources):
            namespace = namespaces[index % len(namespaces)]
            name = f"db-{index}"
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DatabaseMigration",
                "metadata": {"name": name},
                "spec": {
                    "database": {"secretRef": {"name": "db"}, "ledgerSchema": f"ledger_{index}"},
                    "source": {"inline": migrations(index)},
                },
            }
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            created[(namespace, name)] = time.monotonic()
        all_ready = wait_all_ready(custom, args.resources, started, args.timeout)
        after = request_counts(api)
        rss = peak_rss_mib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(20)
        first_jobs.stop.stop()
    report(args, created, first_jobs.seen, all_ready, after - before, rss)


def wait_all_ready(custom: Any, expected: int, started: float, timeout: float) -> float:
    while time.monotonic() - started < timeout:
        items = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        ready = [
            o
            for o in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in o.get("status", {}).get("conditions", [])
            )
        ]
        if len(ready) == expected:
            return time.monotonic() - started
        time.sleep(2)
    raise SystemExit(f"not all Ready after {timeout}s")


def report(
    args: argparse.Namespace,
    created: dict[tuple[str, str], float],
    first_jobs: dict[tuple[str, str], float],
    all_ready: float,
    requests: Counter[tuple[str, str]],
    rss: float,
) -> None:
    latencies = sorted(first_jobs[key] - at for key, at in created.items() if key in first_jobs)
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    print(
        f"## Operator at scale — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, devcluster (Kubernetes v1.35.4)"
    )
    print()
    print(
        f"{args.resources} DatabaseMigrations in {args.namespaces} namespaces against "
        f"{args.databases} databases; each runs a preflight, an apply and a postflight Job "
        "(three inline migrations)."
    )
    print()
    print("| measure | value | goal |")
    print("|---|---:|---|")
    print(f"| creation to all Ready | {all_ready:.1f} s | — |")
    print(f"| create → first Job, median | {statistics.median(latencies):.2f} s | < 1 s |")
    print(f"| create → first Job, p95 | {p95:.2f} s | — |")
    print(f"| operator peak RSS | {rss:.0f} MiB | < 150 MiB |")
    print()
    print("API requests per DatabaseMigration (all clients: operator, Job controller, kubelet):")
    print()
    print("| verb | resource | per resource |")
    print("|---|---|---:|")
    for (verb, resource), count in sorted(requests.items(), key=lambda kv: -kv[1]):
        if count / args.resources >= 0.05 and verb not in ("WATCH",):
            print(f"| {verb} | {resource} | {count / args.resources:.2f} |")


if __name__ == "__main__":
    main()
