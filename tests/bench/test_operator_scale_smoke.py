"""Smoke run of the operator-at-scale benchmark: proves its code works on devcluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "operator_scale.py"

pytestmark = [pytest.mark.db, pytest.mark.e2e]


def test_operator_scale_benchmark_prints_its_tables() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"],
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| creation to all Ready |" in done.stdout
    assert "| operator peak RSS |" in done.stdout
    jobs = next(line for line in done.stdout.splitlines() if line.startswith("| POST | jobs |"))
    # At least preflight, apply and postflight per resource (a repeated create is refused).
    assert float(jobs.split("|")[3]) >= 3.0
