"""The throwaway PostgreSQL works as root (through the postgres user) and as a normal user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import migrate_safe
from migrate_safe.localpg import LocalPostgres

pytestmark = pytest.mark.db


def test_server_accepts_password_auth_and_is_removed_on_stop() -> None:
    with LocalPostgres() as server:
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT current_setting('listen_addresses')").fetchone() == (
                "127.0.0.1",
            )
        root = server.root
        assert root.exists()
    assert not root.exists()


SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_matches() -> bool:
    """The suite's own interpreter may sit under /root, out of the postgres user's reach."""
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return probe.stdout.strip() == str(sys.version_info[:2])


@pytest.mark.skipif(os.geteuid() != 0, reason="the suite itself runs as a normal user here")
@pytest.mark.skipif(not system_python_matches(), reason="no system Python of the same version")
def test_a_normal_user_can_start_one_too(tmp_path: Path) -> None:
    script = (
        "from migrate_safe.localpg import LocalPostgres\n"
        "import psycopg\n"
        "with LocalPostgres() as s:\n"
        "    print(s.as_service_user, psycopg.connect(s.url()).execute('SELECT 1').fetchone()[0])\n"
    )
    paths = [Path(migrate_safe.__file__).parents[1], Path(psycopg.__file__).parents[1]]
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(SYSTEM_PYTHON), "-c", script],
        capture_output=True, text=True, cwd="/tmp",
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHONPATH": ":".join(map(str, paths))},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1"]
