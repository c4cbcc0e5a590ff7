"""Prometheus metrics of the operator, served on its /metrics endpoint.

Labels are bounded to the resource (namespace, name) and the phase; never SQL, error text or
versions, so cardinality grows with the number of DatabaseMigrations only. The metrics are
declared once (`ALL`); one Collector keeps each resource's series in a plain dictionary and
yields them at scrape time, so a deleted resource's series go with one `forget`.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

PREFIX = "migrate_safe"
RESOURCE = ("namespace", "name")
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exported (a counter's ends in _total)
    kind: str
    help: str
    labels: tuple[str, ...] = RESOURCE
    buckets: tuple[float, ...] = ()


RUNS = MetricSpec(
    f"{PREFIX}_phase_runs_total",
    COUNTER,
    "Phase Jobs that finished, by phase and outcome (succeeded, failed).",
    (*RESOURCE, "phase", "outcome"),
)
PHASE_DURATION = MetricSpec(
    f"{PREFIX}_phase_duration_seconds",
    HISTOGRAM,
    "Wall time of a phase Job, from its start to its completion.",
    (*RESOURCE, "phase"),
    (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
MIGRATIONS_APPLIED = MetricSpec(
    f"{PREFIX}_migrations_applied_total", COUNTER, "Migrations applied."
)
MIGRATIONS_ROLLED_BACK = MetricSpec(
    f"{PREFIX}_migrations_rolled_back_total", COUNTER, "Migrations rolled back."
)
PENDING = MetricSpec(f"{PREFIX}_pending_migrations", GAUGE, "Migrations not yet applied.")
CURRENT_VERSION = MetricSpec(
    f"{PREFIX}_current_version", GAUGE, "The version the ledger is at (0 when empty)."
)
READY = MetricSpec(f"{PREFIX}_ready", GAUGE, "1 when the resource is Ready, else 0.")
IN_PROGRESS_SINCE = MetricSpec(
    f"{PREFIX}_in_progress_since_timestamp_seconds",
    GAUGE,
    "When the current generation's work started; 0 when idle.",
)
LAST_SUCCESS = MetricSpec(
    f"{PREFIX}_last_success_timestamp_seconds", GAUGE, "When a generation last succeeded."
)
LAST_FAILURE = MetricSpec(
    f"{PREFIX}_last_failure_timestamp_seconds", GAUGE, "When a phase last failed."
)
BACKUP_SIZE = MetricSpec(f"{PREFIX}_backup_size_bytes", GAUGE, "Size of the last verified backup.")
LAST_BACKUP = MetricSpec(
    f"{PREFIX}_last_backup_timestamp_seconds", GAUGE, "When the last verified backup finished."
)
ROLLBACKS = MetricSpec(
    f"{PREFIX}_rollbacks_total",
    COUNTER,
    "Rollback Jobs started (lowered target or reverted source).",
)
RECONCILE_ERRORS = MetricSpec(
    f"{PREFIX}_reconcile_errors_total",
    COUNTER,
    "Reconcile passes that failed with an API error (retried).",
)

SET_MEMBERS = MetricSpec(
    f"{PREFIX}_set_members",
    GAUGE,
    "Members of a DatabaseMigrationSet by state (total, ready, running, failed, waiting).",
    (*RESOURCE, "state"),
)
SET_WAVE = MetricSpec(f"{PREFIX}_set_wave", GAUGE, "The wave a set's rollout is at (1-based).")
SET_WAVES = MetricSpec(f"{PREFIX}_set_waves", GAUGE, "How many waves a set's rollout has.")
SET_HALTED = MetricSpec(
    f"{PREFIX}_set_halted", GAUGE, "1 when a set's rollout is halted by its failure budget."
)

ALL = (
    RUNS,
    PHASE_DURATION,
    MIGRATIONS_APPLIED,
    MIGRATIONS_ROLLED_BACK,
    PENDING,
    CURRENT_VERSION,
    READY,
    IN_PROGRESS_SINCE,
    LAST_SUCCESS,
    LAST_FAILURE,
    BACKUP_SIZE,
    LAST_BACKUP,
    ROLLBACKS,
    RECONCILE_ERRORS,
    SET_MEMBERS,
    SET_WAVE,
    SET_WAVES,
    SET_HALTED,
)
SET_METRICS = (SET_MEMBERS, SET_WAVE, SET_WAVES, SET_HALTED)
# Series that exist at 0 from a resource's first pass, so increase() sees its first run too.
PHASES = ("preflight", "plan", "backup", "apply", "postflight", "rollback", "restore")
OUTCOMES = ("succeeded", "failed")
_ZERO_SERIES = [(RUNS, (phase, outcome)) for phase in PHASES for outcome in OUTCOMES] + [
    (counter, ()) for counter in ALL if counter.kind == COUNTER and counter is not RUNS
]
RESOURCE_KIND, SET_KIND = "DatabaseMigration", "DatabaseMigrationSet"

Series = tuple[MetricSpec, tuple[str, ...]]  # a metric and its labels beyond the resource


@dataclass
class _Histogram:
    bucket_counts: list[int]
    sum: float = 0.0


@dataclass
class _Resource:
    values: dict[Series, float] = field(default_factory=dict)
    histograms: dict[Series, _Histogram] = field(default_factory=dict)


class OperatorMetrics(Collector):
    """Every resource's series; thread-safe (kopf runs handlers in a thread pool)."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], _Resource] = {}  # (kind, namespace, name)
        self._lock = threading.Lock()

    def _resource(self, namespace: str, name: str, kind: str = RESOURCE_KIND) -> _Resource:
        found = self._resources.get((kind, namespace, name))
        if found is None:
            zero = _ZERO_SERIES if kind == RESOURCE_KIND else []
            found = _Resource({series: 0.0 for series in zero})
            self._resources[(kind, namespace, name)] = found
        return found

    def touch(self, namespace: str, name: str) -> None:
        with self._lock:
            self._resource(namespace, name)

    def inc(
        self, metric: MetricSpec, namespace: str, name: str, *labels: str, by: float = 1.0
    ) -> None:
        with self._lock:
            values = self._resource(namespace, name).values
            values[(metric, labels)] = values.get((metric, labels), 0.0) + by

    def set(self, metric: MetricSpec, namespace: str, name: str, value: float) -> None:
        with self._lock:
            self._resource(namespace, name).values[(metric, ())] = value

    def set_fleet_gauge(
        self, metric: MetricSpec, namespace: str, name: str, *labels: str, value: float
    ) -> None:
        """A series of a set (its metrics are kept apart from a resource of the same name)."""
        with self._lock:
            self._resource(namespace, name, SET_KIND).values[(metric, labels)] = value

    def get(self, metric: MetricSpec, namespace: str, name: str, *labels: str) -> float:
        with self._lock:
            return self._resource(namespace, name).values.get((metric, labels), 0.0)

    def observe(
        self, metric: MetricSpec, namespace: str, name: str, *labels: str, value: float
    ) -> None:
        with self._lock:
            histograms = self._resource(namespace, name).histograms
            state = histograms.setdefault(
                (metric, labels), _Histogram([0] * (len(metric.buckets) + 1))
            )
            state.bucket_counts[bisect_left(metric.buckets, value)] += 1
            state.sum += value

    def forget(self, namespace: str, name: str, kind: str = RESOURCE_KIND) -> None:
        """A deleted resource leaves no stale series behind."""
        with self._lock:
            self._resources.pop((kind, namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {
                key: _Resource(dict(r.values), {k: _copy(h) for k, h in r.histograms.items()})
                for key, r in self._resources.items()
            }
        for metric in ALL:
            yield _family(metric, snapshot)

    def describe(self) -> Iterator[Metric]:
        for metric in ALL:
            yield _family(metric, {})


def _copy(histogram: _Histogram) -> _Histogram:
    return _Histogram(list(histogram.bucket_counts), histogram.sum)


def _family(metric: MetricSpec, resources: dict[tuple[str, str, str], _Resource]) -> Metric:
    labels = list(metric.labels)
    if metric.kind == HISTOGRAM:
        histograms = HistogramMetricFamily(metric.name, metric.help, labels=labels)
        for (_, *resource), series in resources.items():
            for (spec, extra), state in series.histograms.items():
                if spec is metric:
                    histograms.add_metric([*resource, *extra], _buckets(metric, state), state.sum)
        return histograms
    family_type = CounterMetricFamily if metric.kind == COUNTER else GaugeMetricFamily
    family = family_type(metric.name, metric.help, labels=labels)
    for (_, *resource), series in resources.items():
        for (spec, extra), value in series.values.items():
            if spec is metric:
                family.add_metric([*resource, *extra], value)
    return family


def _buckets(metric: MetricSpec, state: _Histogram) -> list[tuple[str, float]]:
    cumulative, found = 0, []
    for bound, count in zip((*metric.buckets, float("inf")), state.bucket_counts, strict=True):
        cumulative += count
        found.append(("+Inf" if bound == float("inf") else str(float(bound)), float(cumulative)))
    return found


METRICS = OperatorMetrics()
