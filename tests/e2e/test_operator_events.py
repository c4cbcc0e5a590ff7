"""The operator is event-driven: a phase follows its Job's completion at once, triggers that
arrive together make one pass and one Job, and an idle resource costs no API requests."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.testing import Api
from tests.conftest import Database
from tests.e2e.conftest import OperatorProcess
from tests.e2e.test_operator import (
    basic_spec,
    configmap,
    create,
    example_files,
    get,
    jobs_of,
    secret,
    wait_condition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.db]


def requests(api_client: Api) -> Counter[tuple[str, str]]:
    """The API server's own count of requests, by verb and resource (all clients)."""
    host = api_client.configuration.host
    response = api_client.call_api("GET", f"{host}/metrics", header_params={"Accept": "text/plain"})
    text = response.read().decode() if hasattr(response, "read") else str(response.data)
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                labels = sample.labels
                resource = labels.get("resource", "")
                if labels.get("subresource"):
                    resource += "/" + labels["subresource"]
                counts[(labels.get("verb", ""), resource)] += int(sample.value)
    return counts


def test_each_phase_follows_its_jobs_completion_at_once(
    operator: OperatorProcess, core: Api, batch: Api, custom: Api, namespace: str, db: Database
) -> None:
    configmap(core, namespace, "migrations", example_files(3))
    secret(core, namespace, db)
    create(custom, namespace, "orders", basic_spec())
    wait_condition(custom, namespace, "orders", "Ready", "True")
    ran = sorted(jobs_of(batch, namespace), key=lambda job: job.metadata.creation_timestamp)
    assert [job.metadata.labels["migrate-safe.dev/phase"] for job in ran] == [
        "preflight",
        "apply",
        "postflight",
    ]
    for finished, following in itertools.pairwise(ran):
        gap = following.metadata.creation_timestamp - finished.status.completion_time
        # Timestamps have whole seconds: 1 allows for the rounding; a timer would add its tick.
        assert gap.total_seconds() <= 1, (finished.metadata.name, following.metadata.name, gap)


def test_triggers_together_make_one_job_each_and_idle_costs_nothing(
    operator: OperatorProcess,
    api_client: Api,
    core: Api,
    batch: Api,
    custom: Api,
    namespace: str,
    db: Database,
) -> None:
    configmap(core, namespace, "migrations", example_files(3))
    secret(core, namespace, db)
    before = requests(api_client)
    create(custom, namespace, "orders", basic_spec())
    for index in range(20):  # labels and annotations from a GitOps tool: each one an event
        custom.patch_namespaced_custom_object(
            "migrate-safe.dev", "v1alpha1", namespace, "databasemigrations", "orders",
            {"metadata": {"annotations": {"sync": str(index)}}},
        )  # fmt: skip
    wait_condition(custom, namespace, "orders", "Ready", "True")
    made = requests(api_client) - before
    assert len(jobs_of(batch, namespace)) == 3
    assert made[("POST", "jobs")] == 3  # no duplicate POST refused as AlreadyExists
    settled: dict[str, Any] = get(custom, namespace, "orders")
    idle = requests(api_client)
    time.sleep(10)  # not a synchronisation: the measured interval in which nothing may happen
    spent = requests(api_client) - idle
    # DELETEs are other namespaces being torn down (the namespace controller), not ours.
    writes = {key: n for key, n in spent.items() if key[0] in ("POST", "PUT", "PATCH")}
    ours = {
        key: n
        for key, n in writes.items()
        if "databasemigrations" in key[1] or key[1] in ("jobs", "events")
    }
    assert ours == {}
    assert (
        get(custom, namespace, "orders")["metadata"]["resourceVersion"]
        == (settled["metadata"]["resourceVersion"])
    )
