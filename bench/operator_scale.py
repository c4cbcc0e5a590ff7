"""The operator at scale on devcluster: 200 DatabaseMigrations created at once, then 800 more
to reach 1,000 settled ones, then a few idle minutes.

    .venv/bin/python bench/operator_scale.py              # 200 + 800 resources, 3 idle minutes
    .venv/bin/python bench/operator_scale.py --bulk 300   # fewer settled ones, when time is short
    .venv/bin/python bench/operator_scale.py --smoke      # 4 + 4 resources: what the tests check

Reports, in one run, every goal of the operator with its figure and MET / MISSED:
create → first Job (p50, p95) with the first resources created at once; a Job's completion →
the next phase's Job (p50, p95), counted from the moment the watch saw the Job Complete so pod
CPU is not in the figure, and beside it the steps from the pod's success to the Job's Complete
(Kubernetes' Job controller) and on to the next Job; API requests per
resource by verb and resource (the API server's apiserver_request_total: every client), status
PATCHes per phase, Job POSTs against Jobs run, the operator's Events per kstatus
transition (a new phase, or a condition's status or reason changed); the
operator's RSS and CPU-seconds at 0, at the active resources and at all settled; requests per
minute and CPU at idle. Tables on stdout, progress on stderr.

The 800 extra resources are cheap on purpose: four databases, one tiny migration each, no
postflight; they are real DatabaseMigrations that run a preflight and an apply Job.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from operatorbench import (
    GROUP,
    PLURAL,
    VERSION,
    Bench,
    Operator,
    Requests,
    Timeline,
    bench_cluster,
    by_verb,
    create_namespace,
    header,
    job_creations,
    operator_requests,
    percentile,
    progress,
    request_counts,
    requests_table,
    running_operator,
    table,
    verdict,
)

from devcluster.testing import wait_for
from migrate_safe.k8s import jobs
from migrate_safe.k8s.actions import COMPONENT


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


def tiny_migration(index: int) -> dict[str, str]:
    return {
        "001_t.up.sql": f"CREATE TABLE bulk_{index} (id int);",
        "001_t.down.sql": f"DROP TABLE bulk_{index};",
    }


@dataclass
class Sample:
    """The operator's memory and CPU at one moment."""

    rss: float
    peak: float
    cpu: float

    @staticmethod
    def of(operator: Operator) -> Sample:
        return Sample(operator.rss_mib(), operator.peak_rss_mib(), operator.cpu_seconds())


@dataclass
class Batch:
    """Resources created together and what it took them to be Ready."""

    keys: list[tuple[str, str]]  # (namespace, name)
    created: dict[tuple[str, str], float]
    all_ready: float
    requests: Requests
    sample: Sample
    failed: dict[tuple[str, str], str]  # (namespace, owner label) → the Ready condition's message


@dataclass
class Idle:
    minutes: float
    requests: Requests
    cpu_seconds: float
    sample: Sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=200, help="created at once")
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--bulk", type=int, default=800, help="cheap resources added after")
    parser.add_argument("--bulk-databases", type=int, default=4)
    parser.add_argument(
        "--bulk-wave",
        type=int,
        default=100,
        help="the cheap ones are created this many at a time, each wave once the last settled",
    )
    parser.add_argument("--idle-minutes", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--smoke", action="store_true", help="4 + 4 resources, 15 s idle")
    parser.add_argument(
        "--no-hold-pods",
        dest="hold_pods",
        action="store_false",
        help="let the first batch's pods run while its first Jobs are still being created",
    )
    args = parser.parse_args()
    if args.smoke:
        args.resources, args.namespaces, args.databases = 4, 2, 2
        args.bulk, args.bulk_databases, args.idle_minutes, args.timeout = 4, 1, 0.25, 300
    databases = [f"scale_{n}" for n in range(args.databases)]
    databases += [f"bulk_{n}" for n in range(args.bulk_databases)]
    with bench_cluster(databases) as bench:
        run(args, bench)


def run(args: argparse.Namespace, bench: Bench) -> None:
    namespaces = [f"scale-{n}" for n in range(args.namespaces)]
    bulk_namespaces = [f"bulk-{n}" for n in range(args.bulk_databases)]
    for n, namespace in enumerate(namespaces):
        database_secret(bench, namespace, f"scale_{n % args.databases}")
    for n, namespace in enumerate(bulk_namespaces):
        database_secret(bench, namespace, f"bulk_{n}")
    timeline = Timeline(bench.kubeconfig)
    timeline.start()
    with running_operator(bench) as operator:
        at_zero = Sample.of(operator)
        progress(f"operator up: {at_zero.rss:.0f} MiB; creating {args.resources} at once")
        active = create_batch(
            bench, operator, timeline, args.timeout, active_bodies(args), hold_pods=args.hold_pods
        )
        events = operator_events(bench, {ns for ns, _ in active.keys})
        progress(f"{len(active.keys)} Ready in {active.all_ready:.0f}s; adding {args.bulk}")
        settled = create_batch(
            bench, operator, timeline, args.timeout, bulk_bodies(args), wave=args.bulk_wave
        )
        progress(f"{len(settled.keys)} more Ready in {settled.all_ready:.0f}s; idle now")
        idle = measure_idle(bench, operator, args.idle_minutes)
    timeline.stop()
    report(args, timeline, (at_zero, active, settled, idle), events)


def database_secret(bench: Bench, namespace: str, database: str) -> None:
    create_namespace(bench.core, namespace)
    bench.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "db"}, "stringData": {"DATABASE_URL": bench.database_url(database)}},
    )


# 200 Job pods at once on two cores start over many minutes; with the default 10-minute
# preflight deadline a third of them failed on the clock, which is not what is measured.
JOB_DEADLINE_SECONDS = 3600


def resource(name: str, ledger: str, files: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": {
            "database": {"secretRef": {"name": "db"}, "ledgerSchema": ledger},
            "source": {"inline": files},
            "jobTemplate": {"activeDeadlineSeconds": JOB_DEADLINE_SECONDS},
            **spec,
        },
    }


def active_bodies(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"scale-{i % args.namespaces}", resource(f"db-{i}", f"ledger_{i}", migrations(i)))
        for i in range(args.resources)
    ]


def bulk_bodies(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"bulk-{i % args.bulk_databases}",
            resource(f"b-{i}", f"ledger_b{i}", tiny_migration(i), postflight={"enabled": False}),
        )
        for i in range(args.bulk)
    ]


def create_batch(
    bench: Bench,
    operator: Operator,
    timeline: Timeline,
    timeout: float,
    bodies: list[tuple[str, dict[str, Any]]],
    *,
    hold_pods: bool = False,
    wave: int = 0,
) -> Batch:
    """Create every body as fast as the API server takes them (or `wave` at a time, each wave
    once the one before has settled); wait until all are Ready or Failed (from the watch: no
    polling that would count as requests).

    With `hold_pods` the node is cordoned until every resource has its first Job: the Jobs'
    pods wait in Pending instead of taking the cores the operator needs to create the other
    first Jobs, so create → first Job measures the operator and the control plane alone.
    Waves keep the pods of the cheap ones within what two cores start before their Jobs'
    deadline: 800 created at once left 650 preflight pods past it."""
    before = request_counts(bench.api)
    created: dict[tuple[str, str], float] = {}
    started = time.monotonic()
    size = wave or len(bodies)
    for first in range(0, len(bodies), size):
        created.update(
            create_wave(bench, timeline, timeout, bodies[first : first + size], hold_pods)
        )
        settle(operator, timeline, timeout, {(ns, jobs.label_value(n)) for ns, n in created})
    took = time.monotonic() - started
    labels = {(ns, jobs.label_value(name)) for ns, name in created}
    failed = {key: why for key, why in timeline.failed.items() if key in labels}
    if failed:
        progress(f"  {len(failed)} failed, first: {next(iter(failed.values()))}")
    requests = request_counts(bench.api) - before
    return Batch(list(created), created, took, requests, Sample.of(operator), failed)


def create_wave(
    bench: Bench,
    timeline: Timeline,
    timeout: float,
    bodies: list[tuple[str, dict[str, Any]]],
    hold_pods: bool,
) -> dict[tuple[str, str], float]:
    created: dict[tuple[str, str], float] = {}
    if hold_pods:
        schedulable(bench, False)
    for namespace, body in bodies:
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        created[(namespace, body["metadata"]["name"])] = time.monotonic()
    if hold_pods:
        labels = {(ns, jobs.label_value(name)) for ns, name in created}
        wait_for(
            f"{len(labels)} first Jobs",
            lambda: len(labels & timeline.jobs_of().keys()) == len(labels),
            timeout,
            every=0.5,
        )
        schedulable(bench, True)
    return created


def settle(
    operator: Operator, timeline: Timeline, timeout: float, labels: set[tuple[str, str]]
) -> None:
    def settled() -> bool:
        ready = len(labels & timeline.ready.keys())
        failed = len(labels & timeline.failed.keys())
        if int(time.monotonic()) % 30 == 0:
            progress(
                f"  {ready}/{len(labels)} Ready, {failed} failed, {operator.rss_mib():.0f} MiB"
            )
        return ready + failed == len(labels)

    wait_for(f"{len(labels)} resources to settle", settled, timeout, every=1.0)


def schedulable(bench: Bench, allowed: bool) -> None:
    """Cordon (or uncordon) the devcluster's node, as `kubectl cordon` does."""
    for node in bench.core.list_node().items:
        bench.core.patch_node(node.metadata.name, {"spec": {"unschedulable": not allowed}})


def measure_idle(bench: Bench, operator: Operator, minutes: float) -> Idle:
    """Nothing changes: what the operator still asks of the API server, and its CPU."""
    time.sleep(min(30.0, minutes * 20))  # the last events of the batch drain
    before, cpu = request_counts(bench.api), operator.cpu_seconds()
    started = time.monotonic()
    time.sleep(minutes * 60)
    elapsed = (time.monotonic() - started) / 60
    requests = request_counts(bench.api) - before
    return Idle(elapsed, requests, operator.cpu_seconds() - cpu, Sample.of(operator))


def operator_events(bench: Bench, namespaces: set[str]) -> Counter[str]:
    """The operator's Events about DatabaseMigrations in `namespaces`, by reason."""
    found: Counter[str] = Counter()
    for namespace in namespaces:
        listed = bench.core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=DatabaseMigration"
        )
        for event in listed.items:
            if (event.reporting_component or event.source.component) == COMPONENT:
                found[event.reason] += event.count or 1
    return found


# --- the report -------------------------------------------------------------------------------


@dataclass
class Latencies:
    """A batch's Jobs in time (seconds): each resource's first Job after its creation, and
    each Job that Succeeded to the same resource's next Job, split at Kubernetes' own steps."""

    first: list[float] = field(default_factory=list)  # create → first Job
    next_job: list[float] = field(default_factory=list)  # Job Complete → next Job
    pod_to_criteria: list[float] = field(default_factory=list)  # pod Succeeded → SuccessCriteriaMet
    pod_to_complete: list[float] = field(default_factory=list)  # pod Succeeded → Job Complete
    pod_to_next: list[float] = field(default_factory=list)  # pod Succeeded → next Job
    ran: dict[tuple[str, str], int] = field(default_factory=dict)  # Jobs run per resource


def latencies(timeline: Timeline, batch: Batch) -> Latencies:
    by_owner = timeline.jobs_of()
    found = Latencies()
    for key, created in batch.created.items():
        owned = by_owner.get((key[0], jobs.label_value(key[1])), [])
        found.ran[key] = len(owned)
        if owned:
            found.first.append(owned[0].created - created)
        for done, following in itertools.pairwise(owned):
            pod = done.pod_succeeded
            for into, start, end in (
                (found.next_job, done.complete, following.created),
                (found.pod_to_next, pod, following.created),
                (found.pod_to_complete, pod, done.complete),
                (found.pod_to_criteria, pod, done.criteria_met),
            ):
                if start is not None and end is not None:
                    into.append(end - start)
    return found


def transitions(timeline: Timeline, batch: Batch) -> tuple[int, int]:
    """kstatus transitions (a new phase, or a condition's status or reason changed) and status
    updates of any kind the watch saw on the batch's resources."""
    keys = {(ns, jobs.label_value(name)) for ns, name in batch.keys}
    return (
        sum(timeline.transitions[key] for key in keys),
        sum(timeline.updates[key] for key in keys),
    )


def report(
    args: argparse.Namespace,
    timeline: Timeline,
    samples: tuple[Sample, Batch, Batch, Idle],
    events: Counter[str],
) -> None:
    at_zero, active, settled, idle = samples
    n = len(active.keys)
    total = n + len(settled.keys)
    timed = latencies(timeline, active)
    first, next_job, jobs_run = timed.first, timed.next_job, sum(timed.ran.values())
    requests = by_verb(active.requests)
    job_posts, refused = job_creations(active.requests)
    cheap = latencies(timeline, settled)
    cheap_posts, cheap_refused = job_creations(settled.requests)
    m = max(len(settled.keys), 1)
    status_patches = requests[("PATCH", f"{PLURAL}/status")]
    moves, updates = transitions(timeline, active)
    event_count = sum(events.values())
    idle_ops = operator_requests(idle.requests)
    idle_per_resource_5min = idle_ops / total / idle.minutes * 5
    idle_cpu = idle.cpu_seconds / (idle.minutes * 60) * 100
    print(header("Operator at scale"))
    print()
    print(
        f"{n} DatabaseMigrations created at once in {args.namespaces} namespaces against "
        f"{args.databases} databases (preflight, apply and postflight Jobs; three inline "
        f"migrations each), then {len(settled.keys)} more on {args.bulk_databases} databases "
        f"(one tiny migration, preflight and apply Jobs; {args.bulk_wave or len(settled.keys)} "
        f"at a time, each wave once the last settled) for {total} settled; then "
        f"{idle.minutes:.1f} idle minutes. Job pods run the project image on the devcluster's "
        "node, on the same cores as the control plane and the operator. "
        + (
            "While the first batch's first Jobs were created, the node was cordoned: their pods "
            "waited in Pending, so create → first Job is the operator's and the control "
            "plane's time, not the pods'. The second batch ran without that hold."
            if args.hold_pods
            else "No pods were held back: create → first Job includes the pods' load."
        )
    )
    print()
    goals = [
        (
            "create → first Job, p50",
            f"{percentile(first, 50):.2f} s",
            "< 1 s",
            percentile(first, 50) < 1,
        ),
        (
            "create → first Job, p95",
            f"{percentile(first, 95):.2f} s",
            "< 3 s",
            percentile(first, 95) < 3,
        ),
        (
            "Job Complete → next phase's Job, p50",
            f"{percentile(next_job, 50):.2f} s",
            "< 1 s",
            percentile(next_job, 50) < 1,
        ),
        (
            "status PATCHes per phase",
            f"{status_patches / jobs_run:.2f}",
            "≤ 2",
            status_patches <= 2 * jobs_run,
        ),
        (
            "Job POSTs per resource vs Jobs run",
            f"{job_posts / n:.2f} vs {jobs_run / n:.2f}",
            "equal",
            job_posts == jobs_run,
        ),
        (
            "operator Events per kstatus transition",
            f"{event_count / max(moves, 1):.2f}",
            "≤ 1",
            event_count <= moves,
        ),
        (
            f"operator RSS, {total} settled",
            f"{idle.sample.rss:.0f} MiB",
            "< 150 MiB",
            idle.sample.rss < 150,
        ),
        (
            "idle API requests per resource per 5 min",
            f"{idle_per_resource_5min:.3f}",
            "≤ 1",
            idle_per_resource_5min <= 1,
        ),
        ("idle CPU", f"{idle_cpu:.2f} % of a core", "< 2 %", idle_cpu < 2),
    ]
    print(
        table(
            ["goal", "figure", "target", "verdict"],
            [(g, f, t, verdict(ok)) for g, f, t, ok in goals],
        )
    )
    print()
    print(
        table(
            ["measure", "value", "goal"],
            [
                ("creation to all Ready", f"{active.all_ready:.1f} s ({n} at once)", "—"),
                (
                    f"creation to all Ready, {len(settled.keys)} more",
                    f"{settled.all_ready:.1f} s",
                    "—",
                ),
                ("create → first Job, p50 / p95 / max", spread(first), "< 1 s / < 3 s"),
                (
                    f"create → first Job, the {len(settled.keys)} more, pods not held back",
                    spread(cheap.first),
                    "—",
                ),
                ("Job Complete → next phase's Job, p50 / p95 / max", spread(next_job), "< 1 s"),
                (
                    "its pod Succeeded → the Job's SuccessCriteriaMet (Kubernetes)",
                    spread(timed.pod_to_criteria),
                    "—",
                ),
                (
                    "its pod Succeeded → the Job Complete (Kubernetes)",
                    spread(timed.pod_to_complete),
                    "—",
                ),
                ("its pod Succeeded → next phase's Job", spread(timed.pod_to_next), "—"),
                (
                    "resources that failed (first, then the cheap ones)",
                    f"{len(active.failed)}, {len(settled.failed)}"
                    + "".join(
                        f"; {why}" for why in {*active.failed.values(), *settled.failed.values()}
                    ),
                    "0",
                ),
                ("operator peak RSS", f"{idle.sample.peak:.0f} MiB", "—"),
                ("Jobs run per resource", f"{jobs_run / n:.2f}", "3"),
                (
                    "Job POSTs per resource (refused as existing)",
                    f"{job_posts / n:.2f} ({refused / n:.2f})",
                    "= Jobs run",
                ),
                (
                    "the cheap ones: Jobs run, Job POSTs (refused)",
                    f"{sum(cheap.ran.values()) / m:.2f}, {cheap_posts / m:.2f} "
                    f"({cheap_refused / m:.2f})",
                    "= Jobs run",
                ),
                (
                    "status PATCHes per resource (status changes the watch saw)",
                    f"{status_patches / n:.2f} ({updates / n:.2f})",
                    "≤ 2 per phase",
                ),
                (
                    "operator Events per resource (kstatus transitions)",
                    f"{event_count / n:.2f} ({moves / n:.2f})",
                    "≤ 1 per transition",
                ),
            ],
        )
    )
    print()
    print("Operator memory and CPU (the operator's process, /proc):")
    print()
    print(
        table(
            ["moment", "RSS", "peak RSS so far", "CPU-seconds so far"],
            [
                ("0 resources (started, watching)", *mib_cpu(at_zero)),
                (f"{n} active, all just Ready", *mib_cpu(active.sample)),
                (f"{total} just Ready", *mib_cpu(settled.sample)),
                (f"{total} settled, after {idle.minutes:.1f} idle minutes", *mib_cpu(idle.sample)),
            ],
        )
    )
    print()
    idle_all = sum(c for (v, _, _), c in idle.requests.items() if v != "WATCH")
    print(f"At idle ({total} settled resources, {idle.minutes:.1f} minutes, watches excluded):")
    print()
    print(
        table(
            ["measure", "value"],
            [
                (
                    "requests per minute on the operator's resources",
                    f"{idle_ops / idle.minutes:.1f}",
                ),
                (
                    "requests per minute, all clients (kubelet, controllers, leases)",
                    f"{idle_all / idle.minutes:.1f}",
                ),
                ("operator CPU", f"{idle.cpu_seconds:.2f} CPU-s = {idle_cpu:.2f} % of a core"),
            ],
        )
    )
    print()
    print(f"Operator Events about the {n} resources, by reason (per resource):")
    print()
    print(table(["reason", "per resource"], [(r, f"{c / n:.2f}") for r, c in events.most_common()]))
    print()
    print(f"API requests per DatabaseMigration, the {n} created at once (all clients):")
    print()
    print(requests_table(active.requests, n, "resource"))
    print()
    print(f"API requests per DatabaseMigration, the {len(settled.keys)} cheap ones (all clients):")
    print()
    print(requests_table(settled.requests, len(settled.keys), "resource"))


def spread(values: list[float]) -> str:
    if not values:
        return "— (none)"
    return (
        f"{percentile(values, 50):.2f} / {percentile(values, 95):.2f} / {max(values):.2f} s "
        f"(n={len(values)})"
    )


def mib_cpu(sample: Sample) -> tuple[str, str, str]:
    return f"{sample.rss:.0f} MiB", f"{sample.peak:.0f} MiB", f"{sample.cpu:.1f}"


if __name__ == "__main__":
    main()
