"""Fixtures shared by the suites: a real throwaway PostgreSQL (never a mock) and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from migrate_safe.localpg import LocalPostgres

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "migrations"
# The PostgreSQL major the suite runs on (.ci/run's version matrix sets it); unset: the
# default server of migrate_safe.localpg.
MAJOR_VARIABLE = "MIGRATE_SAFE_PG_MAJOR"


def pytest_configure(config: pytest.Config) -> None:
    """With MIGRATE_SAFE_PG_MAJOR set, install (or reuse) that major and point
    MIGRATE_SAFE_PG_BINDIR at it, so that every server the suite starts and every pg_dump,
    pg_restore and psql the harness runs in a subprocess are of that major."""
    major = os.environ.get(MAJOR_VARIABLE)
    if not major or os.environ.get("MIGRATE_SAFE_PG_BINDIR"):
        return
    done = subprocess.run(
        [str(ROOT / "tools" / "pg_install.sh"), major], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise pytest.UsageError(f"{MAJOR_VARIABLE}={major}: {done.stderr.strip()}")
    os.environ["MIGRATE_SAFE_PG_BINDIR"] = done.stdout.strip()


def requested_major() -> int | None:
    major = os.environ.get(MAJOR_VARIABLE)
    return int(major) if major else None


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    with LocalPostgres(major=requested_major()) as server:
        yield server


@dataclass
class Database:
    """One fresh database per test, on the session's PostgreSQL."""

    server: LocalPostgres
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True, **kwargs)  # type: ignore[arg-type]

    def execute(self, query: str) -> None:
        with self.connect() as conn:
            conn.execute(query.encode())

    def scalar(self, query: str, *params: object) -> object:
        with self.connect() as conn:
            row = conn.execute(query, params or None).fetchone()
            return row[0] if row else None

    def rows(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with self.connect() as conn:
            return conn.execute(query, params or None).fetchall()


@pytest.fixture
def db(pg: LocalPostgres) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Database(pg, name)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Cli:
    """Runs `python -m migrate_safe` as a user would, in its own process."""

    db: Database
    workdir: Path

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def env(
        self, migrations: Path | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.db.url
        env["MIGRATIONS_DIR"] = str(migrations or self.workdir / "migrations")
        env["MIGRATE_SAFE_LOG_DIR"] = str(self.log_dir)
        return {**env, **(extra or {})}

    @property
    def migrations(self) -> Path:
        return self.workdir / "migrations"

    def write(self, version: int, name: str, up: str, down: str | None = None) -> Path:
        """Write NNN_name.up.sql (and .down.sql) into the migrations dir; return the up path."""
        up_path = self.migrations / f"{version:03d}_{name}.up.sql"
        up_path.write_text(up)
        if down is not None:
            (self.migrations / f"{version:03d}_{name}.down.sql").write_text(down)
        return up_path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "migrate_safe", *args, "--termination-log", "none"]

    def __call__(
        self,
        *args: str,
        migrations: Path | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI; `env` adds to (or overrides) the environment it gets."""
        return subprocess.run(
            self.command(*args),
            env=self.env(migrations, env),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env(),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(db: Database, tmp_path: Path) -> Cli:
    (tmp_path / "migrations").mkdir()
    return Cli(db, tmp_path)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll observable state (a row, a file) until it holds; a missing ledger is "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except psycopg.errors.UndefinedTable:
            pass  # the ledger is not created yet
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")
