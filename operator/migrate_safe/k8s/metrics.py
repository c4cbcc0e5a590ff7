"""Prometheus metrics of the operator, served on its /metrics endpoint.

Labels are bounded to the resource (namespace, name) and the phase; never SQL, error text or
versions, so cardinality grows with the number of DatabaseMigrations only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "migrate_safe"
RESOURCE = ("namespace", "name")

RUNS = Counter(
    f"{PREFIX}_phase_runs_total",
    "Phase Jobs that finished, by phase and outcome (succeeded, failed).",
    [*RESOURCE, "phase", "outcome"],
)
PHASE_DURATION = Histogram(
    f"{PREFIX}_phase_duration_seconds",
    "Wall time of a phase Job, from its start to its completion.",
    [*RESOURCE, "phase"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
MIGRATIONS_APPLIED = Counter(
    f"{PREFIX}_migrations_applied_total", "Migrations applied.", list(RESOURCE)
)
MIGRATIONS_ROLLED_BACK = Counter(
    f"{PREFIX}_migrations_rolled_back_total", "Migrations rolled back.", list(RESOURCE)
)
PENDING = Gauge(f"{PREFIX}_pending_migrations", "Migrations not yet applied.", list(RESOURCE))
CURRENT_VERSION = Gauge(
    f"{PREFIX}_current_version", "The version the ledger is at (0 when empty).", list(RESOURCE)
)
READY = Gauge(f"{PREFIX}_ready", "1 when the resource is Ready, else 0.", list(RESOURCE))
IN_PROGRESS_SINCE = Gauge(
    f"{PREFIX}_in_progress_since_timestamp_seconds",
    "When the current generation's work started; 0 when idle.",
    list(RESOURCE),
)
LAST_SUCCESS = Gauge(
    f"{PREFIX}_last_success_timestamp_seconds", "When a generation last succeeded.", list(RESOURCE)
)
LAST_FAILURE = Gauge(
    f"{PREFIX}_last_failure_timestamp_seconds", "When a phase last failed.", list(RESOURCE)
)
BACKUP_SIZE = Gauge(
    f"{PREFIX}_backup_size_bytes", "Size of the last verified backup.", list(RESOURCE)
)
LAST_BACKUP = Gauge(
    f"{PREFIX}_last_backup_timestamp_seconds",
    "When the last verified backup finished.",
    list(RESOURCE),
)
ROLLBACKS = Counter(
    f"{PREFIX}_rollbacks_total",
    "Rollback Jobs started (lowered target or reverted source).",
    list(RESOURCE),
)
RECONCILE_ERRORS = Counter(
    f"{PREFIX}_reconcile_errors_total",
    "Reconcile passes that failed with an API error (retried).",
    list(RESOURCE),
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
)
