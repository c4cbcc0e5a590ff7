"""rollback against a real PostgreSQL: by version, by steps, from the ledger's stored SQL."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import EXAMPLES, Cli, Database

pytestmark = pytest.mark.db


def tables(db: Database) -> list[str]:
    rows = db.rows(
        "SELECT table_name::text FROM information_schema.tables"
        " WHERE table_schema = 'public' ORDER BY 1"
    )
    return [str(r[0]) for r in rows]


def three_tables(cli: Cli) -> None:
    for version, name in ((1, "a"), (2, "b"), (3, "c")):
        cli.write(version, name, f"CREATE TABLE {name} (id int);", f"DROP TABLE {name};")


def test_rollback_by_version_and_by_steps(cli: Cli, db: Database) -> None:
    three_tables(cli)
    assert cli("apply").returncode == 0
    done = cli("rollback", "--steps", "1")
    assert done.returncode == 0, done.stderr
    assert tables(db) == ["a", "b"]
    assert cli("rollback", "--to", "0").returncode == 0
    assert tables(db) == []
    assert db.rows("SELECT version FROM migrate_safe.applied") == []
    downs = db.rows(
        "SELECT version FROM migrate_safe.history"
        " WHERE direction = 'down' AND outcome = 'succeeded'"
        " ORDER BY id"
    )
    assert downs == [(3,), (2,), (1,)]


def test_seed_style_rollback_flag_rolls_back_one(cli: Cli, db: Database) -> None:
    three_tables(cli)
    assert cli("apply").returncode == 0
    assert cli("--rollback").returncode == 0
    assert tables(db) == ["a", "b"]


def test_examples_roll_back_to_nothing_including_the_concurrent_index(
    cli: Cli, db: Database
) -> None:
    for path in EXAMPLES.glob("*.sql"):
        shutil.copy(path, cli.migrations)
    assert cli("apply").returncode == 0
    done = cli("rollback", "--to", "0")
    assert done.returncode == 0, done.stderr
    assert tables(db) == []
    assert db.scalar("SELECT count(*) FROM pg_proc WHERE proname = 'orders_sync_state'") == 0


def test_reverted_source_rolls_back_from_down_sql_stored_at_apply_time(
    cli: Cli, db: Database
) -> None:
    three_tables(cli)
    assert cli("apply").returncode == 0
    for path in cli.migrations.glob("00[23]_*"):
        path.unlink()  # a GitOps revert: the files of versions 2 and 3 are gone
    status = json.loads(cli("status", "--json").stdout)
    assert status["drift"]["missing_from_source"] == [2, 3]
    done = cli("rollback", "--to", "1")
    assert done.returncode == 0, done.stderr
    assert tables(db) == ["a"]


def test_rollback_without_a_down_anywhere_exits_4_naming_versions(cli: Cli, db: Database) -> None:
    cli.write(1, "a", "CREATE TABLE a (id int);")
    cli.write(2, "b", "CREATE TABLE b (id int);")
    assert cli("apply", "--allow-missing-down").returncode == 0
    done = cli("rollback", "--to", "0", "--allow-missing-down")
    assert done.returncode == 4
    assert "version(s) 2, 1" in done.stderr
    assert tables(db) == ["a", "b"]


def test_failing_down_exits_4_and_keeps_the_version(cli: Cli, db: Database) -> None:
    cli.write(1, "a", "CREATE TABLE a (id int);", "DROP TABLE not_there;")
    assert cli("apply").returncode == 0
    done = cli("rollback")
    assert done.returncode == 4
    assert "42P01" in done.stderr
    assert db.rows("SELECT version, state FROM migrate_safe.applied") == [(1, "applied")]


def test_plan_lists_what_would_run_without_writing(cli: Cli, db: Database) -> None:
    three_tables(cli)
    done = cli("plan", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert [m["version"] for m in plan["migrations"]] == [1, 2, 3]
    assert plan["migrations"][0]["relations"] == ["a"]
    assert db.scalar("SELECT to_regnamespace('migrate_safe')") is None  # no ledger created
    assert cli("apply").returncode == 0
    back = json.loads(cli("plan", "--to", "1", "--json").stdout)
    assert (back["direction"], [m["version"] for m in back["migrations"]]) == ("down", [3, 2])
