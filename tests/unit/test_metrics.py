"""The operator's metrics as Prometheus scrapes them: counters start at 0 for a new resource,
histograms are cumulative, and a deleted resource leaves no series behind."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from migrate_safe.k8s import metrics


def scrape(collected: metrics.OperatorMetrics) -> str:
    registry = CollectorRegistry()
    registry.register(collected)
    return generate_latest(registry).decode()


def test_a_new_resource_has_every_counter_at_zero_and_forget_removes_it() -> None:
    collected = metrics.OperatorMetrics()
    collected.touch("shop", "orders")
    text = scrape(collected)
    labels = 'name="orders",namespace="shop",outcome="failed",phase="apply"'
    assert f"migrate_safe_phase_runs_total{{{labels}}} 0.0" in text
    assert 'migrate_safe_migrations_applied_total{name="orders",namespace="shop"} 0.0' in text
    collected.forget("shop", "orders")
    assert 'namespace="shop"' not in scrape(collected)


def test_histograms_are_cumulative_with_sum_and_count() -> None:
    collected = metrics.OperatorMetrics()
    for seconds in (0.5, 3, 3, 7200):
        collected.observe(metrics.PHASE_DURATION, "shop", "orders", "apply", value=seconds)
    text = scrape(collected)
    labels = 'name="orders",namespace="shop",phase="apply"'
    bucket = "migrate_safe_phase_duration_seconds_bucket"
    assert f'{bucket}{{le="1.0",{labels}}} 1.0' in text
    assert f'{bucket}{{le="5.0",{labels}}} 3.0' in text
    assert f'{bucket}{{le="+Inf",{labels}}} 4.0' in text
    assert "migrate_safe_phase_duration_seconds_sum" in text and "7206.5" in text
