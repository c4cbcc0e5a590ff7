"""Shared pieces of the operator benchmarks (operator_scale.py, fleet_scale.py): a devcluster
with the project image and a throwaway PostgreSQL reachable from pods, the operator as a
process of its own with its memory and CPU read from /proc, the API server's request counters,
watches that time every Job, pod and resource, and the verdict columns of the tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import table  # noqa: E402

import devcluster  # noqa: E402
from devcluster import image  # noqa: E402
from devcluster.testing import wait_for  # noqa: E402
from migrate_safe.k8s import jobs  # noqa: E402
from migrate_safe.localpg import LocalPostgres  # noqa: E402

GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"
SET_PLURAL = "databasemigrationsets"
CRDS = ROOT / "crds"
# What the operator reads and writes: the rest of the API traffic (kubelet, Job controller,
# scheduler, leases) is the cluster's own.
OPERATOR_RESOURCES = frozenset(
    {
        PLURAL,
        f"{PLURAL}/status",
        SET_PLURAL,
        f"{SET_PLURAL}/status",
        "jobs",
        "configmaps",
        "events",
        "secrets",
    }
)

Requests = Counter[tuple[str, str, str]]  # (verb, resource[/subresource], HTTP code) → count


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Bench:
    """A running devcluster with the project image, and a PostgreSQL its pods reach."""

    pg: LocalPostgres
    pg_host: str
    kubeconfig: Path
    job_image: str
    work: Path
    api: client.ApiClient

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> Any:
        return client.BatchV1Api(self.api)

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)

    def database_url(self, database: str) -> str:
        """The DSN of `database` as pods reach it (through the node)."""
        return psycopg.conninfo.make_conninfo(self.pg.url(database), host=self.pg_host)

    def kubectl(self, *args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, check=False
        )
        return done.stdout if done.returncode == 0 else f"kubectl failed: {done.stderr.strip()}"


@contextmanager
def bench_cluster(databases: Iterable[str], max_connections: int = 400) -> Iterator[Bench]:
    """PostgreSQL with `databases`, a devcluster with the project image loaded and both CRDs
    installed; everything is torn down afterwards whatever happened."""
    # `kill <pid>` stops a run like Ctrl-C: the cluster, the operator and PostgreSQL go too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="migrate-safe-bench-"))
    with LocalPostgres(settings={"max_connections": str(max_connections)}) as pg:
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            for name in databases:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        built = image.ensure_image()
        cluster = devcluster.up(work / "cluster")
        try:
            cluster.load_image(built)
            pg_host = cluster.expose(pg.port)
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            for crd in ("databasemigration.yaml", "databasemigrationset.yaml"):
                install_crd(client.ApiextensionsV1Api(api), CRDS / crd)
            yield Bench(pg, pg_host, cluster.kubeconfig, built.ref, work, api)
        finally:
            tear_down(work / "cluster")


def tear_down(root: Path) -> None:
    """devcluster.down, again when a pod's cgroup vanished while it was reading them (with
    hundreds of pods stopping at once, that race happens)."""
    for _ in range(3):
        try:
            devcluster.down(root)
            return
        except FileNotFoundError as error:
            progress(f"tearing the cluster down again: {error.filename} vanished")
    devcluster.down(root)


def install_crd(extensions: Any, path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    extensions.create_custom_resource_definition(body)
    name = body["metadata"]["name"]

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(f"the CRD {name}", established, timeout=60)


def create_namespace(core: Any, name: str) -> None:
    """A namespace whose pods are admitted: its default ServiceAccount exists."""
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        f"the ServiceAccount of {name}",
        lambda: bool(core.list_namespaced_service_account(name).items),
        timeout=60,
    )


def progress(message: str) -> None:
    """A line on stderr while the benchmark runs (the tables go to stdout)."""
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


# --- the operator process ---------------------------------------------------------------------


@dataclass
class Operator:
    """`migrate-safe operator --standalone` over every namespace, as a process of its own."""

    bench: Bench
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.bench.kubeconfig),
            "MIGRATE_SAFE_JOB_IMAGE": self.bench.job_image,
        }
        env.pop("MIGRATE_SAFE_JOB_COMMAND", None)  # the image's own `migrate-safe`
        command = [
            sys.executable, "-m", "migrate_safe", "operator", "--standalone",
            "--metrics-port", "0", "--liveness-port", "0",
        ]  # fmt: skip
        with (self.bench.work / "operator.log").open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _status(self, field_name: str) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mib(self) -> float:
        return self._status("VmRSS:")

    def peak_rss_mib(self) -> float:
        return self._status("VmHWM:")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the operator so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_operator(bench: Bench) -> Iterator[Operator]:
    """The operator, started and active (its log says so) before any resource arrives: a
    slow start-up on a busy machine is not counted as latency of the first resources."""
    operator = Operator(bench)
    operator.start()
    log = bench.work / "operator.log"
    try:
        wait_for(
            "the operator to be active",
            lambda: "active: this replica reconciles" in log.read_text(errors="replace"),
            timeout=300,
            every=0.5,
        )
        yield operator
    finally:
        operator.stop()


# --- what the API server counted --------------------------------------------------------------


def request_counts(api: client.ApiClient) -> Requests:
    """apiserver_request_total by verb, resource (with subresource) and code: every client."""
    host = api.configuration.host
    response = api.call_api("GET", f"{host}/metrics", header_params={"Accept": "text/plain"})
    text = response.read().decode() if hasattr(response, "read") else str(response.data)
    counts: Requests = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            counts[(labels.get("verb", ""), resource, labels.get("code", ""))] += int(sample.value)
    return counts


def by_verb(requests: Requests) -> Counter[tuple[str, str]]:
    """The counts by verb and resource, codes summed."""
    summed: Counter[tuple[str, str]] = Counter()
    for (verb, resource, _), count in requests.items():
        summed[(verb, resource)] += count
    return summed


def operator_requests(requests: Requests) -> int:
    """Requests on what the operator reads and writes, watches excluded."""
    return sum(
        count
        for (verb, resource, _), count in requests.items()
        if resource in OPERATOR_RESOURCES and verb != "WATCH"
    )


def job_creations(requests: Requests) -> tuple[int, int]:
    """Job POSTs, and how many of them the API server refused as already existing."""
    posts = [(code, c) for (v, r, code), c in requests.items() if (v, r) == ("POST", "jobs")]
    return sum(c for _, c in posts), sum(c for code, c in posts if code == "409")


def requests_table(requests: Requests, per: int, label: str, floor: float = 0.05) -> str:
    """Requests per `label` by verb and resource, watches left out, largest first."""
    rows = [
        (verb, resource, f"{count / per:.2f}")
        for (verb, resource), count in sorted(by_verb(requests).items(), key=lambda kv: -kv[1])
        if count / per >= floor and verb != "WATCH"
    ]
    return table(["verb", "resource", f"per {label}"], rows, right=2)


# --- watches that time what happens -----------------------------------------------------------


@dataclass
class JobSeen:
    namespace: str
    owner: str  # the owning resource's label value
    phase: str
    created: float  # monotonic time the watch first showed it
    # When the watches first showed its pod Succeeded, then the Job's SuccessCriteriaMet and
    # Complete conditions: Kubernetes' Job controller syncs a Job a second after its pod changes.
    pod_succeeded: float | None = None
    criteria_met: float | None = None
    complete: float | None = None


@dataclass
class Timeline:
    """Jobs, their pods and DatabaseMigrations as three watches saw them, in monotonic time."""

    kubeconfig: Path
    jobs: dict[tuple[str, str], JobSeen] = field(default_factory=dict)
    ready: dict[tuple[str, str], float] = field(default_factory=dict)  # (ns, owner label) → t
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, owner label) → why
    # Each resource's kstatus transitions (a new phase, or a condition's status or reason
    # changed) and its status updates of any kind, as the watch saw them.
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    updates: Counter[tuple[str, str]] = field(default_factory=Counter)
    _signature: dict[tuple[str, str], object] = field(default_factory=dict)
    _status: dict[tuple[str, str], object] = field(default_factory=dict)
    _watches: list[watch.Watch] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        selector = ",".join(f"{k}={v}" for k, v in jobs.MANAGED_LABELS.items())
        for name, on_event in (
            ("jobs", self._job),
            ("pods", self._pod),
            (PLURAL, self._resource),
        ):
            api = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
            stream = _lister(api, name, selector)
            thread = threading.Thread(target=self._follow, args=(stream, on_event), daemon=True)
            thread.start()

    def stop(self) -> None:
        self._stopped.set()
        for each in self._watches:
            each.stop()

    def _follow(
        self, lister: Callable[..., Any], on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        """Events as plain dicts: a lister without the client's docstring is not deserialized."""
        while not self._stopped.is_set():
            stream = watch.Watch()
            with self._lock:
                self._watches.append(stream)
            try:
                for event in stream.stream(lister, timeout_seconds=3600):
                    on_event(event["object"])
            except Exception:  # a dropped watch (or the cluster going down): watch again
                time.sleep(1)

    def _job(self, job: dict[str, Any]) -> None:
        now = time.monotonic()
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        labels = job["metadata"].get("labels") or {}
        with self._lock:
            seen = self.jobs.setdefault(
                key,
                JobSeen(
                    key[0],
                    labels.get(jobs.LABEL_RESOURCE, ""),
                    labels.get(jobs.LABEL_PHASE, ""),
                    now,
                ),
            )
            true = _true_conditions(job.get("status") or {})
            if "SuccessCriteriaMet" in true and seen.criteria_met is None:
                seen.criteria_met = now
            if "Complete" in true and seen.complete is None:
                seen.complete = now

    def _pod(self, pod: dict[str, Any]) -> None:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            return
        now = time.monotonic()
        labels = pod["metadata"].get("labels") or {}
        job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""
        with self._lock:
            seen = self.jobs.get((pod["metadata"]["namespace"], job))
            if seen is not None and seen.pod_succeeded is None:
                seen.pod_succeeded = now

    def _resource(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        meta, status = body["metadata"], body.get("status") or {}
        key = (meta["namespace"], jobs.label_value(meta["name"]))
        with self._lock:
            phase = status.get("phase")
            if is_ready(body):
                self.ready.setdefault(key, now)
            elif phase == "Failed":
                self.failed.setdefault(key, _ready_message(status))
            signature = (phase, sorted(_condition_states(status)))
            if self._signature.get(key) != signature:
                self._signature[key] = signature
                self.transitions[key] += 1
            if status and self._status.get(key) != status:
                self._status[key] = status
                self.updates[key] += 1

    def jobs_of(self) -> dict[tuple[str, str], list[JobSeen]]:
        """Each resource's Jobs, in the order they appeared."""
        found: dict[tuple[str, str], list[JobSeen]] = {}
        with self._lock:
            for seen in self.jobs.values():
                found.setdefault((seen.namespace, seen.owner), []).append(seen)
        return {key: sorted(each, key=lambda s: s.created) for key, each in found.items()}


def _ready_message(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("message", ""))
    return ""


def _lister(api: client.ApiClient, name: str, selector: str) -> Callable[..., Any]:
    if name == "jobs":
        batch = client.BatchV1Api(api)
        return lambda **kw: batch.list_job_for_all_namespaces(label_selector=selector, **kw)
    if name == "pods":
        core = client.CoreV1Api(api)
        return lambda **kw: core.list_pod_for_all_namespaces(label_selector=selector, **kw)
    custom = client.CustomObjectsApi(api)
    return lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)


def _condition_states(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions", [])
    ]


def _true_conditions(status: dict[str, Any]) -> set[str]:
    return {str(c.get("type")) for c in status.get("conditions") or [] if c.get("status") == "True"}


def is_ready(body: dict[str, Any]) -> bool:
    return "Ready" in _true_conditions(body.get("status") or {})


# --- the report -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def header(title: str) -> str:
    return (
        f"## {title} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load average (1/5/15 min) at the end {load_average()}"
    )
