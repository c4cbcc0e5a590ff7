"""Shared helpers of the benchmarks: the machine header, medians, Markdown tables, throwaway
databases on one LocalPostgres, and optional bench-only libraries (matplotlib, pyinstrument)
from the peers cache that bench/peers/install.sh fills."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DOCS = REPO / "docs" / "benchmarks"


def peers_cache() -> Path:
    default = Path.home() / ".cache" / "migrate-safe" / "peers"
    return Path(os.environ.get("MIGRATE_SAFE_PEERS_CACHE", default))


def pinned_versions() -> dict[str, str]:
    """versions.env as a dict: the one place where every peer's version is pinned."""
    versions = {}
    for line in (BENCH / "peers" / "versions.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            versions[key.strip()] = value.strip()
    return versions


def cached_tool_dir(name: str, version_key: str) -> Path | None:
    """The complete cache directory of a peer, or None when install.sh did not finish it."""
    directory = peers_cache() / f"{name}-{pinned_versions()[version_key]}"
    return directory if (directory / ".installed").exists() else None


def optional_module(module: str, cache_name: str, version_key: str) -> ModuleType | None:
    """Import a bench-only library from the environment, else from the peers cache."""
    try:
        return __import__(module)
    except ImportError:
        pass
    directory = cached_tool_dir(cache_name, version_key)
    if directory is None:
        return None
    sys.path.append(str(directory / "lib"))
    try:
        return __import__(module)
    except ImportError:
        return None


def pyplot() -> Any | None:
    """matplotlib.pyplot with a file-only backend, or None (the caller prints a note)."""
    if optional_module("matplotlib", "matplotlib", "MATPLOTLIB_VERSION") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --- the report -------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def machine_line(conn: psycopg.Connection[Any]) -> str:
    """Date, cores, memory, CPU and server version: what a reader needs to compare numbers."""
    version = conn.execute("SHOW server_version").fetchone()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
        f"{memory_gib():.0f} GiB · {cpu_model()} · PostgreSQL {version[0] if version else '?'} "
        "(throwaway cluster, fsync off)"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> str:
    """A Markdown table; columns from index `right` on are right-aligned (numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(headers))]
    lines = [headers, align, *[[str(cell) for cell in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def seconds(value: float, digits: int = 2) -> str:
    return "—" if value != value else f"{value:.{digits}f}"  # NaN: no measurement


# --- throwaway databases ----------------------------------------------------------------


def create_database(
    admin: psycopg.Connection[Any], name: str, template: str = "template0", copy: bool = False
) -> None:
    """A fresh database; `copy` clones a big template by files instead of through the WAL."""
    drop_database(admin, name)
    strategy = sql.SQL(" STRATEGY = FILE_COPY") if copy else sql.SQL("")
    admin.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
            sql.Identifier(name), sql.Identifier(template), strategy
        )
    )


def drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
