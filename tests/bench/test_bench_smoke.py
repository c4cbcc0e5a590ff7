"""The benchmarks are not timed tests; these smoke runs only prove their code still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.db


def test_fingerprint_benchmark_prints_its_tables() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "fingerprint_bench.py"), "--smoke"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| migrate-safe fingerprint (schema_hash) |" in done.stdout
    assert "| True (same hash as schema_hash) |" in done.stdout  # fingerprint's lines agree
    rows = [line for line in done.stdout.splitlines() if line.startswith("| migrate-safe")]
    assert rows[0].split("|")[3].strip() == "True"  # the same hash on every run
    assert "| 100,000 | 1 |" in done.stdout  # exactly the one planted orphan
