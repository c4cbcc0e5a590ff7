"""The Grafana dashboard: generated from tools/dashboard.py, shipped by the chart, querying only
metrics the operator exports; and its preview renderer on a synthetic demo run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from migrate_safe.k8s import metrics
from tests.unit.packaging.conftest import METRIC, Render, by_kind, exported_metrics
from tools import dashboard, dashboard_preview

COMMITTED = dashboard.OUTPUT


def _exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    assert COMMITTED.read_text() == dashboard.render(), "run: python tools/dashboard.py"


def test_every_queried_metric_is_exported_by_the_operator() -> None:
    board = json.loads(COMMITTED.read_text())
    exported = exported_metrics()
    queried = {name for expr in _exprs(board) for name in METRIC.findall(expr)}
    queried |= {name for v in board["templating"]["list"] for name in METRIC.findall(str(v))}
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"not exported by metrics.py: {sorted(queried - exported)}"


def test_panels_cover_what_an_operator_on_call_looks_for() -> None:
    titles = {p["title"] for p in json.loads(COMMITTED.read_text())["panels"]}
    for wanted in (
        "Phase runs by outcome",
        "Phase duration (p50, p95)",
        "Pending migrations",
        "Current version",
        "Time since last success",
        "Backup size",
        "Failures and reconcile errors",
    ):
        assert wanted in titles


def test_dashboard_is_importable_by_grafana() -> None:
    board = json.loads(COMMITTED.read_text())
    assert board["uid"] == "migrate-safe-operator"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", "no hard-coded data source"
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], target["expr"]


def test_chart_ships_the_dashboard_with_the_sidecar_label(render: Render) -> None:
    (cm,) = [
        o for o in by_kind(render(), "ConfigMap") if o["metadata"]["name"].endswith("dashboard")
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["migrate-safe.json"]) == json.loads(COMMITTED.read_text())
    custom = render(
        "grafanaDashboard.labels.grafana_dashboard=null", "grafanaDashboard.labels.team=db"
    )
    (cm,) = [o for o in by_kind(custom, "ConfigMap") if o["metadata"]["name"].endswith("dashboard")]
    assert cm["metadata"]["labels"]["team"] == "db"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert not [o for o in by_kind(render("grafanaDashboard.create=false"), "ConfigMap")]


def _synthetic_run(tmp_path: Path) -> list[Path]:
    """A demo run through the operator's own metrics collector, scraped every 15 s."""
    collected = metrics.OperatorMetrics()
    registry = CollectorRegistry()
    registry.register(collected)
    by_name = {metric.name.removesuffix("_total"): metric for metric in metrics.ALL}
    by_name |= {name.removeprefix("migrate_safe_"): m for name, m in by_name.items()}

    class Series:
        def __init__(self, name: str, labels: tuple[str, ...]) -> None:
            self.metric, self.labels = by_name[name.removesuffix("_total")], labels

        def set(self, value: float) -> None:
            collected.set(self.metric, "shop", "orders-db", value)

        def inc(self, by: float = 1.0) -> None:
            collected.inc(self.metric, "shop", "orders-db", *self.labels, by=by)

        def observe(self, value: float) -> None:
            collected.observe(self.metric, "shop", "orders-db", *self.labels, value=value)

    def m(name: str, *labels: str) -> Series:
        return Series(name, labels)

    t0 = 1_800_000_000.0
    paths: list[Path] = []
    steps: list[tuple[str, float, str]] = [
        ("preflight", 3, "succeeded"),
        ("backup", 40, "succeeded"),
        ("apply", 12, "succeeded"),
        ("postflight", 2, "succeeded"),
        ("preflight", 4, "failed"),
        ("preflight", 3, "succeeded"),
        ("rollback", 8, "succeeded"),
    ]
    m("pending_migrations").set(3)
    m("current_version").set(5)
    for i, (phase, seconds, outcome) in enumerate(steps):
        now = t0 + 15 * (i + 1)
        m("in_progress_since_timestamp_seconds").set(t0 if i < 4 else 0)
        m("phase_runs_total", phase, outcome).inc()
        m("phase_duration_seconds", phase).observe(seconds)
        if phase == "backup":
            m("backup_size_bytes").set(48 * 1024 * 1024)
            m("last_backup_timestamp_seconds").set(now)
        if phase == "apply":
            m("migrations_applied_total").inc(3)
            m("pending_migrations").set(0)
            m("current_version").set(8)
        if phase == "postflight":
            m("ready").set(1)
            m("last_success_timestamp_seconds").set(now)
        if outcome == "failed":
            m("last_failure_timestamp_seconds").set(now)
            m("reconcile_errors_total").inc()
        if phase == "rollback":
            m("rollbacks_total").inc()
            m("migrations_rolled_back_total").inc(1)
        fleet = {"ready": i, "running": 2, "failed": 0, "waiting": 8 - i}
        for state, value in fleet.items():
            collected.set_fleet_gauge(metrics.SET_MEMBERS, "shop", "tenants", state, value=value)
        collected.set_fleet_gauge(metrics.SET_WAVE, "shop", "tenants", value=1 + i // 3)
        collected.set_fleet_gauge(metrics.SET_HALTED, "shop", "tenants", value=0)
        path = tmp_path / f"scrape-{i:02d}.txt"
        path.write_text(f"# scrape_time {now}\n" + generate_latest(registry).decode())
        paths.append(path)
    return paths


def test_preview_draws_every_panel_from_scrapes(tmp_path: Path) -> None:
    scrapes = dashboard_preview.load_scrapes(_synthetic_run(tmp_path), interval=15)
    counts = dashboard_preview.render(scrapes, tmp_path / "png")
    assert set(counts) == {p.title for p in dashboard.PANELS}
    assert all(counts.values()), {t: n for t, n in counts.items() if not n}
    for png in [*(tmp_path / "png").glob("*.png")]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "png").glob("*.png"))) == len(dashboard.PANELS) + 1


def test_preview_series_match_promql_semantics(tmp_path: Path) -> None:
    scrapes = dashboard_preview.load_scrapes(_synthetic_run(tmp_path), interval=15)
    resource = (("namespace", "shop"), ("name", "orders-db"))
    version = dashboard_preview.evaluate(dashboard.gauge("migrate_safe_current_version").preview,
                                         scrapes)  # fmt: skip
    assert [v for _, v in version[resource]] == [5, 5, 8, 8, 8, 8, 8]
    runs = dashboard_preview.evaluate(
        dashboard.increase("migrate_safe_phase_runs_total", ("phase", "outcome"), "").preview,
        scrapes,
    )
    failed = runs[(("phase", "preflight"), ("outcome", "failed"))]
    assert sum(v for _, v in failed) == 1
    p95 = dashboard_preview._quantile(0.95, [(10.0, 0.0), (30.0, 1.0), (float("inf"), 1.0)])
    assert 10 < p95 <= 30
