"""What scripts rely on: exit codes per class of failure, status --json, reports, secrets."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from migrate_safe.localpg import LocalPostgres
from migrate_safe.results import PhaseResult
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
        ({}, ["apply", "--to", "x"], "argument --to: 'x' is not a whole number"),
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
    summary = PhaseResult.from_json(json.loads(raw))  # what the operator reads
    assert (summary.outcome, summary.exit_code) == ("succeeded", 0)
    assert summary.ledger is not None and summary.ledger.current_version == 300
    assert summary.applied == tuple(range(1, 301))


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
    log = Lines(waiting)
    log.until("waiting for the ledger to reach version 2 (ledger empty)")
    assert cli("apply", "--no-backup", "--to", "1").returncode == 0
    log.until("waiting for the ledger to reach version 2 (ledger at version 1)")
    assert waiting.poll() is None  # it has seen version 1, and version 1 is not enough
    assert cli("apply", "--no-backup").returncode == 0
    assert waiting.wait(30) == 0
    assert "ledger at 2, at or past 2" in log.until("at or past")


class Lines:
    """The stderr lines of a running command, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.stream = process.stderr
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.put(line)

    def until(self, text: str, timeout: float = 30.0) -> str:
        """The first line (from here on) that contains `text`."""
        while True:
            line = self.lines.get(timeout=timeout)
            if text in line:
                return line


# --- the bad-input pass: each refusal names the culprit, exits 5, and never a traceback ----


def assert_refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 5, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("migrate-safe:") == 1  # the prefix once, not once per parser


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[preflight]\nlong_transaction_seconds = "abc"\n',
            'migrate-safe.toml: [preflight] long_transaction_seconds = "abc": expected a number',
        ),
        (
            '[preflight]\nfail_on = "SchemaDrift"\n',
            'migrate-safe.toml: [preflight] fail_on = "SchemaDrift": expected a list of strings',
        ),
        (
            "[backup]\nretention = 0\n",
            "migrate-safe.toml: [backup] retention = 0: must be above zero",
        ),
    ],
)
def test_a_wrongly_typed_settings_value_is_refused_before_anything_runs(
    cli: Cli, db: Database, toml: str, message: str
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    (cli.workdir / "migrate-safe.toml").write_text(toml)
    for command in ("apply", "run", "preflight", "backup"):
        assert_refused(cli(command), message)
    assert db.scalar("SELECT to_regclass('t')") is None


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("apply --lock-timeout 0", "--lock-timeout: '0' is less than 1ms; PostgreSQL reads 0 as"),
        ("apply --lock-timeout-max 0.0001", "--lock-timeout-max: '0.0001' is less than 1ms"),
        ("rollback --statement-timeout 0s", "--statement-timeout: '0s' is less than 1ms"),
        ("apply --retry-backoff 0ms", "--retry-backoff: '0ms' is less than 1ms"),
        ("rollback --retry-backoff-max 0", "--retry-backoff-max: '0' is less than 1ms"),
        ("backup --backup-lock-wait 0", "pg_dump reads 0 as no timeout"),
        ("apply --lock-retries -1", "argument --lock-retries: -1 is below 0"),
        ("apply --retention 0", "argument --retention: 0 is below 1"),
        ("wait --version -1", "wait: argument --version: -1 is below 1 (migration versions"),
        ("wait --version 0", "argument --version: 0 is below 1"),
        ("wait --version 1 --interval 0", "argument --interval: '0' is less than 1ms"),
        ("baseline --version 0", "argument --version: 0 is below 1"),
        ("force --version -1", "argument --version: -1 is below 0"),
        ("apply --to -1", "argument --to: -1 is below 0"),
        ("rollback --to -1", "argument --to: -1 is below 0"),
        ("rollback --steps 0", "argument --steps: 0 is below 1"),
        ("plan --steps -2", "argument --steps: -2 is below 1"),
        ("preflight --long-transaction-seconds 0", "'0': must be a number of seconds above"),
        ("preflight --idle-in-transaction-seconds nan", "'nan': must be a number of seconds"),
        ("verify --slow-migration-seconds -1", "'-1': must be a number of seconds above"),
        ("lint --pg-version 0", "argument --pg-version: 0 is below 1"),
        ("apply --no-such-flag", "migrate-safe: error: unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_meaningless_number_is_refused_naming_the_flag(
    cli: Cli, command: str, message: str
) -> None:
    assert_refused(cli(*command.split()), message)


def test_lock_timeout_zero_never_reaches_postgres(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert_refused(cli("apply", "--no-backup", "--lock-timeout", "0"), "wait forever")
    assert db.scalar("SELECT to_regclass('t')") is None


@pytest.mark.parametrize("schema", ["public", "pg_temp", "information_schema"])
def test_a_schema_the_ledger_cannot_own_is_refused(cli: Cli, db: Database, schema: str) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert_refused(
        cli("apply", "--no-backup", "--ledger-schema", schema),
        f"MIGRATE_SAFE_LEDGER_SCHEMA: '{schema}' is not a schema the ledger may own",
    )
    assert db.scalar("SELECT to_regclass('public.t')") is None


def test_a_ledger_schema_holding_other_objects_is_refused_naming_one(
    cli: Cli, db: Database
) -> None:
    db.execute("CREATE SCHEMA app; CREATE TABLE app.orders (id int);")
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    for args in (["apply", "--no-backup"], ["status"], ["preflight"], ["plan"], ["rollback"]):
        assert_refused(
            cli(*args, "--ledger-schema", "app"),
            "ledger schema app (--ledger-schema) also holds table app.orders, "
            "which is not part of the ledger",
        )
    assert db.scalar("SELECT to_regclass('public.t')") is None
    assert db.scalar("SELECT to_regclass('app.applied')") is None
    # The ledger's own schema is checked the same way once something else moves in.
    assert cli("apply", "--no-backup").returncode == 0
    assert cli("status").returncode == 0
    db.execute("CREATE TYPE migrate_safe.mood AS ENUM ('ok')")
    assert_refused(cli("status"), "also holds type migrate_safe.mood")


def test_lint_takes_a_directory_argument_like_verify(cli: Cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "001_a.up.sql").write_text("CREATE TABLE a (id int);\n")  # no down: MS703
    done = cli("lint", str(elsewhere), "--format", "json")
    assert done.returncode == 1, done.stderr
    assert "MS703" in done.stdout
    assert cli("lint").returncode == 0  # --migrations-dir (empty) when no directory is given


def test_human_output_never_says_none(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    runs = [
        cli("plan"),
        cli("status"),
        cli("apply", "--no-backup"),
        cli("rollback", "--to", "0"),
        cli("plan"),
        cli("postflight"),  # ledger at none, expected 1: exit 3
    ]
    assert [done.returncode for done in runs] == [0, 0, 0, 0, 0, 3]
    for done in runs:
        assert "None" not in done.stdout + done.stderr
    assert "from none" in runs[0].stdout
    assert "ledger at none, expected 1" in runs[-1].stdout
