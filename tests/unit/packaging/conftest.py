"""Shared paths and helpers of the packaging tests (chart, image, dashboards, GitOps health)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "migrate-safe"
HEALTH = ROOT / "docs" / "argocd" / "migrate-safe.dev" / "DatabaseMigration"
TESTDATA = HEALTH / "testdata"

# A metric name as PromQL writes it; the suffixes a histogram or counter adds on the wire.
METRIC = re.compile(r"\bmigrate_safe_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_metrics() -> set[str]:
    """Every series name the operator's /metrics can expose: a scrape of its own collector
    with one resource that has every series."""
    from prometheus_client import CollectorRegistry, generate_latest

    from migrate_safe.k8s import metrics

    collected = metrics.OperatorMetrics()
    for metric in metrics.ALL:
        if metric.kind == metrics.GAUGE:
            collected.set(metric, "ns", "name", 1)
        if metric.kind == metrics.HISTOGRAM:
            collected.observe(metric, "ns", "name", "apply", value=1)
    collected.touch("ns", "name")
    registry = CollectorRegistry()
    registry.register(collected)
    scraped = generate_latest(registry).decode().splitlines()
    series = {line.split("{")[0].split(" ")[0] for line in scraped if not line.startswith("#")}
    return series | {metric.name for metric in metrics.ALL}  # a histogram's family name too


def unknown_metrics(expressions: list[str]) -> dict[str, set[str]]:
    """Expression → metric names it queries that the operator does not export."""
    exported = exported_metrics()
    missing: dict[str, set[str]] = {}
    for expr in expressions:
        unknown = set(METRIC.findall(expr)) - exported
        if unknown:
            missing[expr] = unknown
    return missing


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run helm are marked `helm`: the fast tier (README, Development) leaves them
    out, since helm may have to be built first; CI runs them all."""
    for item in items:
        if "helm_bin" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.helm)


def _pinned_helm_version() -> str:
    versions = (ROOT / "devcluster" / "versions.sh").read_text()
    match = re.search(r"^HELM_VERSION=(\S+)", versions, re.MULTILINE)
    assert match, "devcluster/versions.sh pins HELM_VERSION"
    return match[1]


def _helm() -> Path:
    """The devcluster's helm: the pinned version from its cache (built by .ci/run), else a
    helm on PATH, else built now by devcluster/build.sh (the Go build: many minutes cold)."""
    cache = Path(os.environ.get("DEVCLUSTER_CACHE", Path.home() / ".cache/migrate-safe/devcluster"))
    cached = sorted(cache.glob(f"*_helm-{_pinned_helm_version()}_*/bin/helm"))
    if cached:
        return cached[-1]
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    out = subprocess.run(
        [str(ROOT / "devcluster" / "build.sh")], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return _helm()


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Iterator[Render]:
    """`helm template` the chart with --set flags; returns the rendered objects."""

    def run(*sets: str, namespace: str = "migrate-safe-system") -> list[dict[str, Any]]:
        args = [str(helm_bin), "template", "ms", str(CHART), "--namespace", namespace]
        for value in sets:
            args += ["--set", value]
        out = subprocess.run(args, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    yield run


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
