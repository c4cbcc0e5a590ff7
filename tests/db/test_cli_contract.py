"""What scripts rely on: exit codes per class of failure, status --json, reports, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrate_safe.localpg import LocalPostgres
from tests.conftest import Cli, Database

pytestmark = pytest.mark.db


def test_status_json_contract_on_an_empty_database(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["current_version"], status["pending"], status["dirty"]) == (None, [1], False)


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"001_a.up.sql": b"SELECT 1;"}, ["apply"], "no down migration"),
        ({"001_a.up.sql": b"\xff\xfe", "001_a.down.sql": b""}, ["apply"], "not UTF-8"),
        ({"1_a.up.sql": b"", "01_b.up.sql": b""}, ["apply"], "duplicate version 1"),
        ({"abc.up.sql": b""}, ["status"], "name does not parse"),
        ({"001_a.up.sql": b"-- migrate-safe:lock-timeout=soon\n"}, ["plan"], "cannot parse"),
        ({}, ["apply", "--to", "x"], "invalid int value"),
        ({}, ["apply", "--lock-timeout", "fast"], "--lock-timeout"),
        ({}, ["apply", "--no-such-flag"], "unrecognized arguments"),
        ({}, ["apply", "--to", "3"], "--to 3: no migration"),
        ({}, ["apply", "--ledger-schema", "Bad-Name"], "--ledger-schema"),
    ],
)
def test_bad_input_exits_5_with_a_message_naming_the_culprit(
    cli: Cli, files: dict[str, bytes], args: list[str], message: str
) -> None:
    for name, content in files.items():
        (cli.migrations / name).write_bytes(content)
    done = cli(*args)
    assert done.returncode == 5, done.stderr
    assert message in done.stderr


def test_missing_dir_and_missing_url_and_unreachable_database_exit_5(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli("status", migrations=tmp_path / "absent").returncode == 5
    env = {k: v for k, v in cli.env().items() if k != "DATABASE_URL"}
    no_url = subprocess.run(cli.command("status"), env=env, capture_output=True, text=True)
    assert no_url.returncode == 5 and "DATABASE_URL" in no_url.stderr
    env["DATABASE_URL"] = "postgresql://nobody:pw@127.0.0.1:1/none"
    unreachable = subprocess.run(cli.command("status"), env=env, capture_output=True, text=True)
    assert unreachable.returncode == 5
    assert "cannot connect to nobody@127.0.0.1:1/none" in unreachable.stderr


def test_password_never_appears_in_any_output_or_artefact(
    cli: Cli, db: Database, pg: LocalPostgres, tmp_path: Path
) -> None:
    cli.write(1, "ok", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "bad", "SELECT * FROM nowhere;", "SELECT 1;")
    termination = tmp_path / "termination-log"
    outputs = []
    for args in (["apply"], ["status", "--json"], ["apply", "--dry-run"], ["rollback"]):
        command = [*cli.command(*args)[:-2], "--termination-log", str(termination)]
        done = subprocess.run(
            command, env=cli.env(), cwd=cli.workdir, capture_output=True, text=True, check=False
        )
        outputs += [done.stdout, done.stderr]
    wrong = cli.env()
    wrong["DATABASE_URL"] = db.url.replace(pg.password, pg.password + "x")
    refused = subprocess.run(cli.command("status"), env=wrong, capture_output=True, text=True)
    assert refused.returncode == 5
    outputs += [refused.stdout, refused.stderr]
    artefacts = [p.read_text() for p in cli.log_dir.iterdir()] + [termination.read_text()]
    assert len(artefacts) >= 5
    for text in outputs + artefacts:
        assert pg.password not in text


def test_termination_message_is_a_compact_json_summary(cli: Cli, tmp_path: Path) -> None:
    for version in range(1, 301):
        cli.write(
            version,
            f"table_with_a_long_name_{version}",
            f"CREATE TABLE t{version} ();",
            "SELECT 1;",
        )
    termination = tmp_path / "termination-log"
    command = [*cli.command("apply")[:-2], "--termination-log", str(termination)]
    done = subprocess.run(command, env=cli.env(), cwd=cli.workdir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    raw = termination.read_bytes()
    assert len(raw) <= 4096
    summary = json.loads(raw)
    assert (summary["outcome"], summary["exit_code"], summary["current_version"]) == (
        "succeeded",
        0,
        300,
    )


def test_python_dash_m_and_console_script_are_the_same_program() -> None:
    module = subprocess.run(
        [sys.executable, "-m", "migrate_safe", "--version"], capture_output=True, text=True
    )
    script = Path(sys.executable).with_name("migrate-safe")
    console = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert module.stdout == console.stdout and module.stdout.startswith("migrate-safe ")


def test_wait_blocks_until_the_ledger_reaches_the_version(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "u", "CREATE TABLE u (id int);", "DROP TABLE u;")
    early = cli("wait", "--version", "2", "--timeout", "1s", "--interval", "200ms")
    assert early.returncode == 2
    assert "did not reach version 2 within 1s" in early.stderr
    waiting = cli.start("wait", "--version", "2", "--timeout", "60s", "--interval", "200ms")
    assert cli("apply", "--no-backup", "--to", "1").returncode == 0
    time.sleep(0.5)
    assert waiting.poll() is None  # version 1 is not enough
    assert cli("apply", "--no-backup").returncode == 0
    assert waiting.wait(30) == 0
