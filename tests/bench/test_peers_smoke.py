"""Smoke runs of the zero-downtime and throughput benchmarks, and of each peer tool's driver.

These prove the code works, nothing more: the numbers come from the full runs (bench/README.md).
The smoke runs need no peer; a peer that bench/peers/install.sh has not installed is skipped
with the reason.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from migrate_safe.localpg import LocalPostgres

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.db


def bench_module(name: str) -> ModuleType:
    """Import a module of bench/ (a directory of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def run_script(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def row(output: str, tool: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.startswith(f"| {tool} |")]
    assert lines, f"no row for {tool}:\n{output}"
    return [cell.strip() for cell in lines[0].strip("|").split("|")]


def test_zero_downtime_smoke_shows_the_naive_stall_and_migrate_safe_waiting() -> None:
    output = run_script("zero_downtime.py")
    tools = ("psql (naive)", "migrate-safe", "migrate-safe + preflight")
    naive, ours, preflight = (row(output, tool) for tool in tools)
    # columns: tool, completed, exit, migration s, p50, p99, max s, > 1 s, zero s, failed, ratio
    assert naive[1] == "1/1" and ours[1] == "1/1"
    assert float(naive[6]) > 1.0  # the ALTER queued behind the reader and stalled the app
    assert float(ours[6]) < 0.5  # migrate-safe waited for the reader, then migrated
    assert preflight[1] == "0/1" and preflight[2] == "1"  # preflight refused: exit 1
    assert ours[9] == "0"


def test_throughput_smoke_applies_everything_with_every_local_tool() -> None:
    output = run_script("throughput.py")
    assert "### 40 small migrations" in output and "### 50 migrations over" in output
    for tool in ("psql, one transaction per file", "migrate-safe apply --skip-preflight",
                 "migrate-safe apply (with preflight)"):  # fmt: skip
        cells = row(output, tool)
        assert cells[5] == "1/1", cells  # the run applied everything (checked in the catalog)


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres() as pg:
        yield pg


def installed_peer_names() -> list[str]:
    """Peers that bench/peers/install.sh installed on this machine; the others are reported by
    the benchmark itself (left out of its tables with the reason), not tested here."""
    return [tool.name for tool in bench_module("peer_tools").peers() if not tool.missing]


@pytest.mark.parametrize("name", installed_peer_names())
def test_each_installed_peer_applies_the_same_steps(
    name: str, postgres: LocalPostgres, tmp_path: Path
) -> None:
    peer_tools: Any = bench_module("peer_tools")
    tool = next(t for t in peer_tools.peers() if t.name == name)
    steps = bench_module("throughput").small_steps(8)
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    target = peer_tools.Target(postgres.bindir, postgres.port, postgres.password, name)
    tool.write(tmp_path, steps)
    done = subprocess.run(
        tool.command(target, tmp_path), env=target.env(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    with psycopg.connect(postgres.url(name)) as conn:
        rows = conn.execute("SELECT count(*) FROM t1").fetchone()
    assert rows == (10,)  # the eighth step inserted ten rows into t1
