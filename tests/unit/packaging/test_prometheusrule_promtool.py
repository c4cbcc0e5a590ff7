"""The chart's alerts as Prometheus itself evaluates them: promtool (pinned, tools/gotool.sh)
checks the rendered rules and runs tests/promtool/alerts.test.yaml; these tests hold that file to
the alerts the chart ships and to the series the operator exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from migrate_safe.k8s import metrics
from tests.metric_names import PROMTOOL_TESTS, promtool_series, queried_metrics, served_metrics
from tests.unit.packaging.conftest import ROOT, Render, by_kind

SERIES = re.compile(r"^(?P<name>[a-z_:][a-z0-9_:]*)\{(?P<labels>[^}]*)\}$")


def _alert_cases() -> list[dict[str, object]]:
    tests = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    return [case for test in tests for case in test["alert_rule_test"]]


@pytest.mark.promtool
def test_promtool_checks_the_rules_and_passes_every_alert_test(helm_bin: Path) -> None:
    run = subprocess.run(
        [str(ROOT / "tests" / "promtool" / "run.sh"), str(helm_bin.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 6 rules found" in run.stdout
    assert run.stdout.rstrip().endswith("SUCCESS")


def test_every_alert_is_tested_firing_and_silent(render: Render) -> None:
    (rule,) = by_kind(render("metrics.prometheusRule.enabled=true"), "PrometheusRule")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    cases = _alert_cases()
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts


def test_test_series_have_the_names_and_labels_the_operator_exports() -> None:
    labels_of = {spec.name: set(spec.labels) for spec in metrics.ALL}
    for series in promtool_series():
        match = SERIES.match(series)
        assert match, f"not a series selector: {series}"
        labels = {pair.split("=")[0] for pair in match["labels"].split(",")}
        assert match["name"] in labels_of, f"{series}: not exported by metrics.py"
        assert labels == labels_of[match["name"]], series


def test_every_queried_metric_is_served_by_the_operators_collector() -> None:
    """The operator's collector, empty as at start-up, declares every name it will serve."""
    registry = CollectorRegistry()
    registry.register(metrics.OperatorMetrics())
    served = served_metrics(generate_latest(registry).decode())
    assert queried_metrics() - served == set()


def test_runbook_urls_point_at_alert_sections_of_the_runbook() -> None:
    headings = re.findall(r"^### Alert: (\w+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    anchors = {f"alert-{name.lower()}" for name in headings}
    for case in _alert_cases():
        for alert in case["exp_alerts"]:  # type: ignore[attr-defined]
            url = alert["exp_annotations"]["runbook_url"]
            assert url.rsplit("#", 1)[1] in anchors, url
