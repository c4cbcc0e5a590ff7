"""The Grafana dashboard of the migrate-safe operator, built in code.

    python tools/dashboard.py            # rewrite charts/migrate-safe/dashboards/migrate-safe.json
    python tools/dashboard.py --check    # exit 1 when the committed file is out of date

Every panel queries only the operator's own metrics (operator/migrate_safe/k8s/metrics.py; a test
checks the names). Each query also carries a `Preview`: how tools/dashboard_preview.py computes
the same series from raw scrapes, to draw the panels without a Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "charts" / "migrate-safe" / "dashboards" / "migrate-safe.json"
UID = "migrate-safe-operator"

SEL = 'namespace=~"$namespace", name=~"$name"'
SET_SEL = 'namespace=~"$namespace"'  # sets have names of their own, not DatabaseMigrations'
RESOURCE = "{{namespace}}/{{name}}"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Preview:
    """How to compute a query's series from scrapes (a subset of PromQL, enough for previews).

    kind: value (the gauge), age (scrape time minus a timestamp gauge; only when > 0),
    increase (counter delta between scrapes), quantile (histogram quantile of bucket deltas).
    """

    kind: Literal["value", "age", "increase", "quantile"]
    metric: str
    by: tuple[str, ...] = ("namespace", "name")
    where: tuple[tuple[str, str], ...] = ()
    quantile: float = 0.95


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str
    preview: Preview


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    kind: Literal["timeseries", "stat", "bargauge"]
    unit: str
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


def _by(labels: tuple[str, ...]) -> str:
    return ", ".join(labels)


def gauge(metric: str, legend: str = RESOURCE) -> Target:
    return Target(f"{metric}{{{SEL}}}", legend, Preview("value", metric))


def set_gauge(metric: str, state: str | None = None) -> Target:
    """A DatabaseMigrationSet gauge, optionally one `state` of migrate_safe_set_members."""
    where = (("state", state),) if state else ()
    matchers = SET_SEL + "".join(f', {k}="{v}"' for k, v in where)
    legend = f"{RESOURCE} {state}" if state else RESOURCE
    return Target(f"{metric}{{{matchers}}}", legend, Preview("value", metric, where=where))


def age(metric: str) -> Target:
    expr = f"(time() - {metric}{{{SEL}}}) and {metric}{{{SEL}}} > 0"
    return Target(expr, RESOURCE, Preview("age", metric))


def increase(
    metric: str,
    by: tuple[str, ...],
    legend: str,
    where: tuple[tuple[str, str], ...] = (),
) -> Target:
    matchers = SEL + "".join(f', {k}="{v}"' for k, v in where)
    expr = f"sum by ({_by(by)}) (increase({metric}{{{matchers}}}[$__rate_interval]))"
    return Target(expr, legend, Preview("increase", metric, by, where))


def quantile(metric: str, q: float, by: tuple[str, ...], legend: str) -> Target:
    expr = (
        f"histogram_quantile({q}, sum by (le, {_by(by)}) "
        f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))"
    )
    return Target(expr, legend, Preview("quantile", metric, by, quantile=q))


PANELS: tuple[Panel, ...] = (
    Panel(
        "Ready",
        "1 when the DatabaseMigration is Ready for its current generation.",
        "stat",
        "none",
        (gauge("migrate_safe_ready"),),
        width=6,
        options={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "Not ready", "color": "red"},
                        "1": {"text": "Ready", "color": "green"},
                    },
                }
            ]
        },
    ),
    Panel(
        "Current version",
        "The version the ledger is at, per DatabaseMigration (0: empty ledger).",
        "stat",
        "none",
        (gauge("migrate_safe_current_version"),),
        width=6,
    ),
    Panel(
        "Pending migrations",
        "Migrations in the source that the ledger has not applied yet.",
        "timeseries",
        "none",
        (gauge("migrate_safe_pending_migrations"),),
        width=6,
    ),
    Panel(
        "Time since last success",
        "How long ago a generation last succeeded.",
        "bargauge",
        "s",
        (age("migrate_safe_last_success_timestamp_seconds"),),
        width=6,
    ),
    Panel(
        "Phase runs by outcome",
        "Phase Jobs that finished (preflight, backup, apply, postflight, rollback…).",
        "timeseries",
        "none",
        (increase("migrate_safe_phase_runs_total", ("phase", "outcome"), "{{phase}} {{outcome}}"),),
        options={"stacking": "normal", "draw": "bars"},
    ),
    Panel(
        "Phase duration (p50, p95)",
        "Wall time of the phase Jobs, from the histogram's buckets.",
        "timeseries",
        "s",
        (
            quantile("migrate_safe_phase_duration_seconds", 0.5, ("phase",), "p50 {{phase}}"),
            quantile("migrate_safe_phase_duration_seconds", 0.95, ("phase",), "p95 {{phase}}"),
        ),
    ),
    Panel(
        "Migrations applied and rolled back",
        "Individual migrations (versions), not runs.",
        "timeseries",
        "none",
        (
            increase(
                "migrate_safe_migrations_applied_total",
                ("namespace", "name"),
                f"applied {RESOURCE}",
            ),
            increase(
                "migrate_safe_migrations_rolled_back_total",
                ("namespace", "name"),
                f"rolled back {RESOURCE}",
            ),
        ),
        width=8,
        options={"draw": "bars"},
    ),
    Panel(
        "Failures and reconcile errors",
        "Failed phase Jobs, rollbacks started, and Kubernetes API errors while reconciling.",
        "timeseries",
        "none",
        (
            increase(
                "migrate_safe_phase_runs_total",
                ("namespace", "name", "phase"),
                f"{{{{phase}}}} failed {RESOURCE}",
                (("outcome", "failed"),),
            ),
            increase("migrate_safe_rollbacks_total", ("namespace", "name"), f"rollback {RESOURCE}"),
            increase(
                "migrate_safe_reconcile_errors_total",
                ("namespace", "name"),
                f"reconcile error {RESOURCE}",
            ),
        ),
        width=8,
        options={"draw": "bars"},
    ),
    Panel(
        "In progress for",
        "How long the current generation has been working (absent when idle).",
        "timeseries",
        "s",
        (age("migrate_safe_in_progress_since_timestamp_seconds"),),
        width=8,
    ),
    Panel(
        "Backup size",
        "Size of the last verified backup (pg_dump) per DatabaseMigration.",
        "timeseries",
        "bytes",
        (gauge("migrate_safe_backup_size_bytes"),),
    ),
    Panel(
        "Time since last verified backup",
        "How long ago the last verified backup finished.",
        "bargauge",
        "s",
        (age("migrate_safe_last_backup_timestamp_seconds"),),
    ),
    Panel(
        "Fleet members by state",
        "DatabaseMigrationSet members (docs/fleets.md): Ready at the set's revision, running, "
        "failed, waiting for their wave.",
        "timeseries",
        "none",
        tuple(
            set_gauge("migrate_safe_set_members", state)
            for state in ("ready", "running", "failed", "waiting")
        ),
        options={"stacking": "normal"},
    ),
    Panel(
        "Fleet wave",
        "The wave each set's rollout is at (1-based; the canary is wave 1).",
        "stat",
        "none",
        (set_gauge("migrate_safe_set_wave"),),
        width=6,
    ),
    Panel(
        "Fleets halted",
        "1 when a set's failure budget halted its rollout: see the MigrateSafeSetHalted runbook.",
        "stat",
        "none",
        (set_gauge("migrate_safe_set_halted"),),
        width=6,
        options={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "Rolling", "color": "green"},
                        "1": {"text": "Halted", "color": "red"},
                    },
                }
            ]
        },
    ),
)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {
            "drawStyle": panel.options.get("draw", "line"),
            "fillOpacity": 60 if panel.options.get("draw") == "bars" else 10,
            "stacking": {"mode": panel.options.get("stacking", "none"), "group": "A"},
            "spanNulls": False,
        }
    options: dict[str, Any] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    if panel.kind in ("stat", "bargauge"):
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": custom,
                "mappings": panel.options.get("mappings", []),
                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
            },
            "overrides": [],
        },
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend,
                "range": True,
            }
            for i, target in enumerate(panel.targets)
        ],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(PANELS, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": UID,
        "title": "migrate-safe operator",
        "description": "DatabaseMigrations: readiness, versions, phase runs and durations, "
        "backups, failures. Generated by tools/dashboard.py.",
        "tags": ["migrate-safe", "postgresql", "migrations"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("namespace", "Namespace", "label_values(migrate_safe_ready, namespace)"),
                _variable(
                    "name",
                    "DatabaseMigration",
                    'label_values(migrate_safe_ready{namespace=~"$namespace"}, name)',
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python tools/dashboard.py", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.write_text(text)
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
