"""Every version of a DatabaseMigration the API server serves during a test, each judged by
kstatus itself (tests/gotools.py): what Flux's `wait: true` and `kubectl wait` would have seen at
each phase. The versions come from a watch, so no short phase is missed between two polls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import watch

from devcluster.testing import Api, wait_for
from tests.gotools import Verdict, kstatus

GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"


@dataclass(frozen=True)
class Step:
    """One served version: its status.phase, its Ready reason and kstatus' verdict."""

    resource_version: str
    phase: str
    ready_reason: str
    verdict: Verdict


@dataclass
class Trail:
    steps: list[Step] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)

    def record(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        (verdict,) = kstatus(obj)
        version = obj["metadata"]["resourceVersion"]
        reason = ready[0]["reason"] if ready else ""
        self.steps.append(Step(version, status.get("phase", ""), reason, verdict))
        self.objects.append(obj)

    def wait_seen(self, obj: dict[str, Any]) -> None:
        """Until the watch has delivered (at least) the version the test read itself."""
        version = int(obj["metadata"]["resourceVersion"])
        wait_for(
            f"the watch to deliver resourceVersion {version}",
            lambda: any(int(s.resource_version) >= version for s in self.steps),
            timeout=60,
        )

    def by_phase(self) -> dict[tuple[str, str], set[str]]:
        """(status.phase, Ready reason) → every kstatus status seen in it."""
        seen: dict[tuple[str, str], set[str]] = {}
        for step in self.steps:
            seen.setdefault((step.phase, step.ready_reason), set()).add(step.verdict.status)
        return seen

    def final(self) -> str:
        return self.steps[-1].verdict.status

    def lines(self) -> list[str]:
        """One line per phase change, for a log or a report."""
        lines: list[str] = []
        for step in self.steps:
            line = f"{step.phase or '-'} ({step.ready_reason or '-'}): {step.verdict.line()}"
            if not lines or lines[-1] != line:
                lines.append(line)
        return lines


@contextmanager
def kstatus_trail(custom: Api, namespace: str, name: str, save_in: Path) -> Iterator[Trail]:
    """Watch `name` while the block runs; the trail is written to save_in/kstatus-<name>.*
    (the phase lines, and every served object as JSON lines)."""
    trail, stop = Trail(), threading.Event()
    watcher = threading.Thread(target=_watch, args=(custom, namespace, name, trail, stop))
    watcher.start()
    try:
        yield trail
    finally:
        stop.set()
        watcher.join(30)
        (save_in / f"kstatus-{name}.txt").write_text("".join(f"{x}\n" for x in trail.lines()))
        objects = "".join(json.dumps(o) + "\n" for o in trail.objects)
        (save_in / f"kstatus-{name}.jsonl").write_text(objects)


def _watch(custom: Api, namespace: str, name: str, trail: Trail, stop: threading.Event) -> None:
    since = ""  # each short watch resumes where the last one ended
    while not stop.is_set():
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=since,
            timeout_seconds=2,
        )
        for event in stream:
            if event["type"] == "ERROR":  # e.g. 410 Gone: start again from the current state
                since = ""
                break
            if event["type"] in ("ADDED", "MODIFIED"):
                trail.record(event["object"])
            since = event["object"]["metadata"]["resourceVersion"]
