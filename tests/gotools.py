"""The Go tools our users run, as the tests run them: promtool (Prometheus) and kstatus
(sigs.k8s.io/cli-utils, what Flux and `kubectl wait` judge status by). tools/gotool.sh builds each
at its pinned version once and caches it; a cache hit costs one `go env` call."""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def tool(name: str) -> Path:
    """The pinned binary (built now on a cold cache: minutes for promtool)."""
    built = subprocess.run(
        [str(ROOT / "tools" / "gotool.sh"), name], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, f"tools/gotool.sh {name} failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Verdict:
    """kstatus' computed status of one object, as it prints it."""

    kind: str
    name: str
    status: str  # InProgress, Current, Failed, Terminating, NotFound, Unknown
    message: str
    namespace: str = ""

    def line(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}: {self.status}: {self.message}"


def kstatus(*objects: dict[str, Any]) -> list[Verdict]:
    """What kstatus computes for each object (as the API server serves it)."""
    run = subprocess.run(
        [str(tool("kstatus"))],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [Verdict(**json.loads(line)) for line in run.stdout.splitlines()]


def kstatus_of(obj: dict[str, Any]) -> str:
    (verdict,) = kstatus(obj)
    return verdict.status
