"""What differs between PostgreSQL majors, handled on purpose (docs/compatibility.md).

Every test here runs on every major of the version matrix (.ci/run sets MIGRATE_SAFE_PG_MAJOR),
and asserts what a user of that major sees; where a feature exists only from some major on, the
test shows the older majors' way of doing the same thing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate_safe.fingerprint import major_of
from migrate_safe.localpg import LocalPostgres, program_major, version_major
from tests.conftest import ROOT, Cli, Database, wait_for

pytestmark = pytest.mark.db


def another_major(major: int) -> int:
    """A major other than this one: what the ledger holds after an upgrade from it."""
    return 16 if major == 17 else 17


def on_major(fingerprint: str, major: int) -> str:
    """The fingerprint as the same hash would read had another major computed it."""
    return f"{major:02d}{fingerprint[2:]}"


def checks(done: subprocess.CompletedProcess[str], phase: str) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(done.stdout)[phase]["checks"]}


def one_table(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);", "DROP TABLE t;")
    done = cli("apply", "--no-backup")
    assert done.returncode == 0, done.stderr


def older_client(directory: Path, major: int, *programs: str) -> dict[str, str]:
    """An installation whose client tools are of an older major than `major`: each program
    answers `--version` as that major does, which is all migrate-safe asks before it refuses.
    (No older real client exists for every major here: 13 is the oldest the matrix runs.)"""
    directory.mkdir()
    for program in programs:
        stand_in = directory / program
        stand_in.write_text(f"#!/bin/sh\necho '{program} (PostgreSQL) {major - 1}.9'\n")
        stand_in.chmod(0o755)
    return {"MIGRATE_SAFE_PG_BINDIR": str(directory)}


@pytest.fixture(scope="session")
def newest_clients() -> Iterator[dict[str, str]]:
    """The newest supported major's installation: its pg_dump writes `SET transaction_timeout`
    into every dump, as the image's client does for servers of every major."""
    install = ROOT / "tools" / "pg_install.sh"
    newest = subprocess.run([install, "--majors"], capture_output=True, text=True, check=True)
    bindir = subprocess.run(
        [install, newest.stdout.split()[-1]], capture_output=True, text=True, check=True
    )
    yield {"MIGRATE_SAFE_PG_BINDIR": bindir.stdout.strip()}


# --- the fingerprint ------------------------------------------------------------------------


def test_a_fingerprint_names_its_major_and_is_the_same_on_every_read(
    cli: Cli, pg: LocalPostgres
) -> None:
    one_table(cli)
    document = json.loads(cli("fingerprint", "--json").stdout)
    plain = cli("fingerprint").stdout.strip()
    assert document["fingerprint"] == plain
    assert document["server_major"] == pg.major == major_of(plain)
    assert plain.startswith(str(pg.major))
    assert re.fullmatch(r"[0-9a-f]{64}", plain)  # what the CRD's expectedFingerprint takes


def test_after_a_major_upgrade_schema_drift_says_so_instead_of_reporting_drift(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    one_table(cli)
    recorded = str(
        db.scalar(
            "SELECT fingerprint FROM migrate_safe.history WHERE fingerprint IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        )
    )
    # What pg_upgrade leaves: the last run's fingerprint, as the old major described the schema.
    old = another_major(pg.major)
    record = (
        "INSERT INTO migrate_safe.history (run_id, direction, outcome, started_at, tool_version,"
        " fingerprint) VALUES ('before-the-upgrade', 'postflight', 'passed', now(), '0.1.0', %s)"
    )
    with db.connect() as conn:
        conn.execute(record, [on_major(recorded, old)])
    upgraded = cli("preflight", "--json")
    drift = checks(upgraded, "preflight")["SchemaDrift"]
    assert upgraded.returncode == 0, upgraded.stderr
    assert drift["status"] == "warn"
    assert f"recorded on PostgreSQL {old}" in drift["summary"]
    assert f"now PostgreSQL {pg.major}" in drift["summary"]
    assert "changed outside" not in drift["summary"]

    with db.connect() as conn:
        conn.execute(record, [recorded])  # a run on this major since
    db.execute("CREATE TABLE made_by_hand (id int)")
    drifted = checks(cli("preflight", "--json"), "preflight")["SchemaDrift"]
    assert drifted["status"] == "warn" and "changed outside migrate-safe" in drifted["summary"]


def test_an_expected_fingerprint_from_another_major_warns_and_a_wrong_one_fails(
    cli: Cli, pg: LocalPostgres
) -> None:
    one_table(cli)
    current = cli("fingerprint").stdout.strip()
    other = another_major(pg.major)
    elsewhere = cli("postflight", "--json", "--expected-fingerprint", on_major(current, other))
    check = checks(elsewhere, "postflight")["Fingerprint"]
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert check["status"] == "warn"
    assert f"computed on PostgreSQL {other}" in check["summary"]
    assert f"on a PostgreSQL {pg.major} server" in check["summary"]

    wrong = cli("postflight", "--json", "--expected-fingerprint", on_major("f" * 64, pg.major))
    assert wrong.returncode == 3
    assert checks(wrong, "postflight")["Fingerprint"]["status"] == "fail"


# --- NOT NULL: a flag up to 17, a catalog constraint with a name from 18 ------------------------


def test_not_null_is_in_the_fingerprint_as_this_major_stores_it(
    db: Database, cli: Cli, pg: LocalPostgres
) -> None:
    one_table(cli)
    before = cli("fingerprint").stdout.strip()
    db.execute(
        "ALTER TABLE t ALTER COLUMN v DROP NOT NULL; ALTER TABLE t ALTER COLUMN v SET NOT NULL"
    )
    assert cli("fingerprint").stdout.strip() == before  # dropped and set again: the same schema
    objects = json.loads(cli("fingerprint", "--json").stdout)["objects"]
    assert any(line.endswith(" v text not null") for line in objects["columns"])
    named = [line for line in objects["constraints"] if "NOT NULL" in line]
    if pg.major >= 18:
        assert "public.t t_v_not_null NOT NULL v" in named
        db.execute("ALTER TABLE t RENAME CONSTRAINT t_v_not_null TO v_required")
        assert cli("fingerprint").stdout.strip() != before  # its name is part of the schema
    else:
        assert named == []  # a column flag, without a name


def test_a_not_valid_not_null_is_reported_until_it_is_validated(
    cli: Cli, pg: LocalPostgres
) -> None:
    # Adding NOT NULL without a long lock: NOT VALID, then VALIDATE. From 18 the NOT NULL
    # constraint itself can be NOT VALID; before, a CHECK stands in for it.
    proof = "NOT NULL v" if pg.major >= 18 else "CHECK (v IS NOT NULL)"
    cli.write(1, "t", "CREATE TABLE t (id int, v text);", "DROP TABLE t;")
    add = f"ALTER TABLE t ADD CONSTRAINT v_required {proof} NOT VALID;"
    cli.write(2, "v_required", add, "ALTER TABLE t DROP CONSTRAINT v_required;")
    applied = cli("apply", "--no-backup")
    assert applied.returncode == 0, applied.stderr
    pending = checks(cli("postflight", "--json"), "postflight")["UnvalidatedChecks"]
    assert pending["status"] == "warn" and "t.v_required" in pending["summary"]
    before = checks(cli("preflight", "--json"), "preflight")["UnvalidatedConstraints"]
    assert before["status"] == "warn" and "t.v_required" in before["summary"]

    cli.write(3, "validate", "ALTER TABLE t VALIDATE CONSTRAINT v_required;", "SELECT 1;")
    assert cli("apply", "--no-backup").returncode == 0
    done = checks(cli("postflight", "--json"), "postflight")["UnvalidatedChecks"]
    assert done["status"] == "pass"


def test_lint_judges_not_null_the_way_this_major_adds_it(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int, v text);", "DROP TABLE t;")
    assert cli("apply", "--no-backup").returncode == 0
    db.execute("INSERT INTO t VALUES (1, 'a row: a scan takes time')")
    cli.write(2, "set", "ALTER TABLE t ALTER COLUMN v SET NOT NULL;", "SELECT 1;")
    if pg.major >= 18:
        cli.write(3, "add", "ALTER TABLE t ADD CONSTRAINT id_required NOT NULL id;", "SELECT 1;")
        safe = "ALTER TABLE t ADD CONSTRAINT v_required NOT NULL v NOT VALID;"
    else:
        safe = "ALTER TABLE t ADD CONSTRAINT v_required CHECK (v IS NOT NULL) NOT VALID;"
    cli.write(4, "safe", safe, "ALTER TABLE t DROP CONSTRAINT v_required;")
    cli.write(5, "validate", "ALTER TABLE t VALIDATE CONSTRAINT v_required;", "SELECT 1;")
    cli.write(6, "proven", "ALTER TABLE t ALTER COLUMN v SET NOT NULL;", "SELECT 1;")
    report = json.loads(cli("lint", "--json").stdout)["lint"]
    assert report["pg_version"] == pg.major
    scans = {
        Path(f["file"]).name: f["safe_alternative"]
        for f in report["findings"]
        if f["rule"] == "MS203" and f["severity"] == "error"
    }
    expected = ["002_set.up.sql", "003_add.up.sql"] if pg.major >= 18 else ["002_set.up.sql"]
    assert sorted(scans) == expected  # the NOT VALID way, validated, proves the column
    way = "NOT NULL col NOT VALID" if pg.major >= 18 else "CHECK (col IS NOT NULL) NOT VALID"
    assert all(way in alternative for alternative in scans.values())


def test_a_rehearsal_says_a_new_enum_value_of_an_existing_type_is_beyond_it(cli: Cli) -> None:
    # Only on a type created in the same transaction (17+) is a new value usable before its
    # commit; on a type that exists already, never, on any major: apply commits in between.
    create = "CREATE TYPE state AS ENUM ('new'); CREATE TABLE parcel (s state);"
    cli.write(1, "state", create, "DROP TABLE parcel; DROP TYPE state;")
    assert cli("apply", "--no-backup").returncode == 0
    cli.write(2, "lost", "ALTER TYPE state ADD VALUE 'lost';", "SELECT 1;")
    use = "CREATE INDEX parcel_lost ON parcel (s) WHERE s = 'lost';"
    cli.write(3, "uses", use, "DROP INDEX parcel_lost;")
    rehearsal = cli("apply", "--dry-run", "--json")
    assert rehearsal.returncode == 0, rehearsal.stderr
    beyond = {e["version"]: e for e in json.loads(rehearsal.stdout)["rehearsal"]}
    assert "uses an enum value" in beyond[3]["not_rehearsed"] and "error" not in beyond[3]
    assert cli("apply", "--no-backup").returncode == 0


# --- transaction_timeout (17+) -------------------------------------------------------------------


def test_a_database_transaction_timeout_does_not_end_a_long_migration(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    if pg.major >= 17:
        # It would end the session, FATAL, mid-migration: lock and history row lost with it.
        db.execute(f"ALTER DATABASE \"{db.name}\" SET transaction_timeout = '1s'")
    cli.write(1, "slow", "CREATE TABLE t (id int); SELECT pg_sleep(1.5);", "DROP TABLE t;")
    done = cli("apply", "--no-backup")
    assert done.returncode == 0, done.stderr
    assert db.scalar("SELECT count(*) FROM migrate_safe.applied") == 1


def pg_dump_waits_for_a_lock(db: Database) -> bool:
    return bool(
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'"
        )
    )


def test_a_database_idle_session_timeout_does_not_end_a_run_waiting_for_its_backup(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    db.execute("CREATE TABLE busy (id int)")
    if pg.major >= 14:
        # The run's session is idle while pg_dump works: this would end it, lock and all.
        db.execute(f"ALTER DATABASE \"{db.name}\" SET idle_session_timeout = '1s'")
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    with db.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        running = cli.start("apply", "--skip-preflight")
        wait_for(lambda: pg_dump_waits_for_a_lock(db))
        # The run's session stays idle longer than idle_session_timeout, and is still there.
        wait_for(
            lambda: (
                db.scalar(
                    "SELECT bool_or(state = 'idle'"
                    " AND state_change < clock_timestamp() - interval '1.5 seconds')"
                    " FROM pg_stat_activity WHERE application_name = 'migrate-safe/apply'"
                )
                is True
            )
        )
        holder.execute("COMMIT")
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 0, stderr
    assert db.scalar("SELECT to_regclass('public.t')") is not None


# --- pg_dump, pg_restore and psql: the client/server version rules -----------------------------


def test_backup_runs_a_pg_dump_of_this_major_or_newer(cli: Cli, pg: LocalPostgres) -> None:
    one_table(cli)
    done = cli("backup", "--json")
    assert done.returncode == 0, done.stderr
    backup = cli.workdir / json.loads(done.stdout)["backup"]["path"]  # relative: to the workdir
    manifest = json.loads(backup.with_name(backup.name + ".json").read_text())
    used = version_major(manifest["pg_dump_version"])
    assert used is not None and used >= pg.major
    if os.environ.get("MIGRATE_SAFE_PG_BINDIR"):  # the matrix: the installation's own client
        assert used == program_major(Path(pg.bin("pg_dump")))


def test_a_pg_dump_older_than_the_server_stops_apply_before_any_ddl(
    cli: Cli, db: Database, pg: LocalPostgres, tmp_path: Path
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    done = cli("apply", env=older_client(tmp_path / "old", pg.major, "pg_dump"))
    assert done.returncode == 1
    assert f"pg_dump of PostgreSQL {pg.major} or newer is needed" in done.stderr
    assert f"{tmp_path / 'old' / 'pg_dump'} is {pg.major - 1}" in done.stderr
    assert "MIGRATE_SAFE_PG_BINDIR" in done.stderr and "--no-backup" in done.stderr
    assert "Traceback" not in done.stderr
    assert db.scalar("SELECT to_regclass('public.t')") is None


def test_a_restore_with_a_client_older_than_the_backup_names_the_client_to_install(
    cli: Cli, db: Database, pg: LocalPostgres, tmp_path: Path
) -> None:
    one_table(cli)
    assert cli("backup").returncode == 0
    db.execute("CREATE TABLE added_later (id int)")
    manifest = json.loads(next(cli.workdir.glob("**/backup-*.json")).read_text())
    written_by = version_major(manifest["pg_dump_version"])
    assert written_by is not None
    old = older_client(tmp_path / "old", written_by, "pg_restore", "psql")
    done = cli("restore", "--yes", env=old)
    assert done.returncode == 4
    assert f"of PostgreSQL {written_by} or newer is needed" in done.stderr
    assert "Traceback" not in done.stderr
    assert db.scalar("SELECT to_regclass('public.added_later')") is not None  # unchanged


@pytest.mark.parametrize("fmt", ["custom", "plain-gzip"])
def test_a_backup_by_the_newest_pg_dump_restores_into_this_major(
    cli: Cli, db: Database, pg: LocalPostgres, newest_clients: dict[str, str], fmt: str
) -> None:
    one_table(cli)
    db.execute("INSERT INTO t VALUES (1, 'kept')")
    taken = cli("backup", "--format", fmt, "--json", env=newest_clients)
    assert taken.returncode == 0, taken.stderr
    db.execute("DROP TABLE t; CREATE TABLE made_by_a_bad_migration (id int)")
    restored = cli("restore", "--yes", "--json", env=newest_clients)
    assert restored.returncode == 0, restored.stderr
    assert db.rows("SELECT id, v FROM t") == [(1, "kept")]
    assert db.scalar("SELECT to_regclass('public.made_by_a_bad_migration')") is None
    assert json.loads(restored.stdout)["matches_backup_fingerprint"] is True
