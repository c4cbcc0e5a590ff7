"""Helpers for tests against a devcluster: waiting, and reading what the node's pods did.

Used by the fixtures in tests/e2e/conftest.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The client's models make every field Optional; the tests read them as plain attributes and let
# a missing one fail the test, so API handles are typed loosely.
Api = Any


@dataclass
class Pods:
    """Reading what the node did with a namespace's pods."""

    core: Api
    namespace: str

    def list(self, selector: str = "") -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector)
        return list(pods.items)

    def log(self, pod: str, container: str) -> str:
        """The container's output, as `kubectl logs` reads it (from the kubelet)."""
        return str(self.core.read_namespaced_pod_log(pod, self.namespace, container=container))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.25) -> Any:
    """Poll ``check`` every ``every`` seconds until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
