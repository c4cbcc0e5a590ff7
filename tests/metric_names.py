"""The metric names our alerts, their promtool tests and the dashboard query, and the names a
/metrics scrape serves: a renamed metric breaks a test instead of an alert going quiet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES_TEMPLATE = ROOT / "charts" / "migrate-safe" / "templates" / "prometheusrule.yaml"
PROMTOOL_TESTS = ROOT / "tests" / "promtool" / "alerts.test.yaml"
DASHBOARD = ROOT / "charts" / "migrate-safe" / "dashboards" / "migrate-safe.json"
METRIC = re.compile(r"\bmigrate_safe_[a-z0-9_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def served_metrics(scrape: str) -> set[str]:
    """Every name a Prometheus text scrape declares (`# TYPE`, even with no sample yet) or
    carries, a histogram's series included."""
    names: set[str] = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {name + suffix for suffix in HISTOGRAM_SERIES}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def promtool_series() -> list[str]:
    """The input series of every promtool test, as written (`name{label="value",...}`)."""
    tests = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    return [series["series"] for test in tests for series in test["input_series"]]


def dashboard_queries() -> list[str]:
    return list(_exprs(json.loads(DASHBOARD.read_text())))


def queried_metrics() -> set[str]:
    """Names in the alert expressions, the promtool tests' series and the dashboard (its panel
    queries and its variables')."""
    texts = [RULES_TEMPLATE.read_text(), *promtool_series(), DASHBOARD.read_text()]
    return {name for text in texts for name in METRIC.findall(text)}


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)
