"""The Grafana dashboard of the migrate-safe operator, built with Grafana's own typed builders
(grafana-foundation-sdk).

    python tools/dashboard.py            # rewrite charts/migrate-safe/dashboards/migrate-safe.json
    python tools/dashboard.py --check    # exit 1 when the committed file is out of date

Every panel queries only the operator's own metrics (operator/migrate_safe/k8s/metrics.py; a test
checks the names, and the operator e2e test against a live scrape). Each query also carries a
`Preview`: how tools/dashboard_preview.py computes the same series from raw scrapes, to draw a
preview of the panels without a Prometheus or a Grafana.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "charts" / "migrate-safe" / "dashboards" / "migrate-safe.json"
UID = "migrate-safe-operator"

SEL = 'namespace=~"$namespace", name=~"$name"'
SET_SEL = 'namespace=~"$namespace"'  # sets have names of their own, not DatabaseMigrations'
RESOURCE = "{{namespace}}/{{name}}"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")


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
    draw: Literal["line", "bars"] = "line"  # timeseries only
    stacked: bool = False  # timeseries only
    states: tuple[tuple[str, str, str], ...] = ()  # (value, text, color) of a stat


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
        states=(("0", "Not ready", "red"), ("1", "Ready", "green")),
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
        draw="bars",
        stacked=True,
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
        draw="bars",
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
        draw="bars",
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
        stacked=True,
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
        states=(("0", "Rolling", "green"), ("1", "Halted", "red")),
    ),
)


AnyPanel = timeseries.Panel | stat.Panel | bargauge.Panel


def _timeseries(panel: Panel) -> timeseries.Panel:
    stacking = viz.StackingMode.NORMAL if panel.stacked else viz.StackingMode.NONE
    draw = viz.GraphDrawStyle.BARS if panel.draw == "bars" else viz.GraphDrawStyle.LINE
    return (
        timeseries.Panel()
        .draw_style(draw)
        .fill_opacity(60 if panel.draw == "bars" else 10)
        .stacking(common.StackingConfig().mode(stacking).group("A"))
        .span_nulls(False)
        .legend(
            common.VizLegendOptions()
            .display_mode(viz.LegendDisplayMode.LIST)
            .placement(viz.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(viz.TooltipDisplayMode.MULTI)
            .sort(viz.SortOrder.DESCENDING)
        )
    )


def _latest(panel: stat.Panel | bargauge.Panel) -> stat.Panel | bargauge.Panel:
    """A stat or bar gauge shows each series' last value."""
    reduce = common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
    return panel.reduce_options(reduce).orientation(viz.VizOrientation.HORIZONTAL)


def _panel(panel: Panel) -> AnyPanel:
    built: AnyPanel
    if panel.kind == "timeseries":
        built = _timeseries(panel)
    else:
        built = _latest(stat.Panel() if panel.kind == "stat" else bargauge.Panel())
    states = {
        value: model.ValueMappingResult(text=text, color=color)
        for value, text, color in panel.states
    }
    green = model.Threshold(value=None, color="green")
    built.title(panel.title).description(panel.description).datasource(DATASOURCE)
    built.unit(panel.unit).span(panel.width).height(panel.height)
    built.mappings([model.ValueMap(states)] if states else [])
    built.thresholds(board.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([green]))
    for i, target in enumerate(panel.targets):
        query = prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        built.with_target(query.expr(target.expr).legend_format(target.legend).range())
    return built


def _variable(name: str, label: str, query: str) -> board.QueryVariable:
    """A multi-value filter over a label, "All" by default."""
    return (
        board.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def build() -> board.Dashboard:
    dashboard = (
        board.Dashboard("migrate-safe operator")
        .uid(UID)
        .description(
            "DatabaseMigrations: readiness, versions, phase runs and durations, backups, "
            "failures, fleets. Generated by tools/dashboard.py."
        )
        .tags(["migrate-safe", "postgresql", "migrations"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("")
        .with_variable(
            board.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            _variable("namespace", "Namespace", "label_values(migrate_safe_ready, namespace)")
        )
        .with_variable(
            _variable(
                "name",
                "DatabaseMigration",
                'label_values(migrate_safe_ready{namespace=~"$namespace"}, name)',
            )
        )
    )
    for panel_id, panel in enumerate(PANELS, start=1):
        dashboard.with_panel(_panel(panel).id(panel_id))  # laid out left to right, row by row
    return dashboard


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


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
