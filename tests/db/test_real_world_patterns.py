"""Patterns met in public golang-migrate and dbmate directories, as fixtures of our own
(tests/real_world/), each run the way a user runs a directory they bring: apply, the
rehearsal, verify, rollback. See docs/real-world.md for where each pattern was seen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from migrate_safe.localpg import LocalPostgres
from tests.conftest import Cli, Database
from tests.db.test_rollback import tables

pytestmark = pytest.mark.db

PATTERNS = Path(__file__).resolve().parents[1] / "real_world"


def use(cli: Cli, pattern: str) -> Path:
    for path in (PATTERNS / pattern).glob("*.sql"):
        shutil.copy(path, cli.migrations)
    return cli.migrations


def report(done: Any) -> dict[str, Any]:
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_verify_reports_a_down_with_a_syntax_error_and_checks_the_rest(cli: Cli) -> None:
    migrations = use(cli, "verify_down_syntax_error")
    done = cli("verify", "--json")
    assert done.returncode == 5, done.stderr
    steps = {step["version"]: step for step in report(done)["migrations"]}
    assert steps[1]["result"] == "pass"
    assert (steps[2]["result"], steps[2]["failed_step"]) == ("fail", "down")
    assert f"{migrations / '2_note.down.sql'}:1" in steps[2]["problems"][0]
    assert (steps[3]["result"], steps[3]["failed_step"]) == ("fail", "down")
    assert "flag" in steps[3]["problems"][0]  # the column the down forgot


def test_an_up_and_down_named_differently_pair_by_version(cli: Cli, db: Database) -> None:
    use(cli, "down_name_differs")
    applied = cli("apply")
    assert applied.returncode == 0, applied.stderr
    assert "1_remove_shelf.down.sql: name differs" in applied.stderr
    assert tables(db) == ["bin", "shelf"]
    assert cli("rollback", "--to", "0").returncode == 0
    assert tables(db) == []
    linted = cli("lint", "--format", "json")
    rules = {f["rule"]: f["severity"] for f in json.loads(linted.stdout)["findings"]}
    assert rules["MS706"] == "warning"


def test_several_transaction_blocks_in_one_file_are_refused_with_the_fix(
    cli: Cli, db: Database
) -> None:
    migrations = use(cli, "two_transaction_blocks")
    done = cli("apply", "--force")
    assert done.returncode == 5
    assert f"{migrations / '2_fill.up.sql'}:1: BEGIN inside the file" in done.stderr
    assert "nothing was run" in done.stderr and tables(db) == []


def test_concurrently_without_the_directive_names_the_only_fix(cli: Cli, db: Database) -> None:
    migrations = use(cli, "concurrently_without_directive")
    refused = cli("apply")
    assert refused.returncode == 1
    assert "MS601 cannot be suppressed" in refused.stderr
    assert "-- migrate-safe:no-transaction" in refused.stderr
    assert "--force" not in refused.stderr.split("MS601 cannot be suppressed")[1]
    for name in ("2_code_index.up.sql", "2_code_index.down.sql"):
        path = migrations / name
        path.write_text("-- migrate-safe:no-transaction\n" + path.read_text())
    assert cli("apply").returncode == 0
    assert db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'parcel_code'::regclass")


@pytest.mark.parametrize(
    ("pattern", "beyond", "why"),
    [
        ("enum_value_used_later", [3], "uses an enum value that an earlier migration"),
        ("rehearsal_after_no_transaction", [3], "may depend on no-transaction migration(s) 2"),
    ],
)
def test_what_one_transaction_cannot_rehearse_is_said_not_failed(
    cli: Cli, db: Database, pg: LocalPostgres, pattern: str, beyond: list[int], why: str
) -> None:
    if pattern == "enum_value_used_later" and pg.major >= 17:
        # From 17 a value added to an enum type created in the same transaction may be used
        # there: the rehearsal, which creates the type too, runs all three files.
        # (tests/db/test_compatibility.py rehearses the same on a type that exists already.)
        beyond = []
    use(cli, pattern)
    rehearsal = cli("apply", "--dry-run", "--json")
    assert rehearsal.returncode == 0, rehearsal.stderr
    entries = {entry["version"]: entry for entry in report(rehearsal)["rehearsal"]}
    assert [v for v, e in entries.items() if "not_rehearsed" in e] == beyond
    if beyond:
        assert why in entries[beyond[0]]["not_rehearsed"]
        assert "could not be rehearsed in one transaction" in rehearsal.stderr
    assert tables(db) == []
    applied = cli("apply")
    assert applied.returncode == 0, applied.stderr
    assert db.scalar("SELECT max(version) FROM migrate_safe.applied") == 3


def test_a_composite_type_attribute_change_is_not_a_table_rewrite(cli: Cli, db: Database) -> None:
    use(cli, "composite_type_attribute")
    done = cli("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MS204" not in done.stdout


def test_a_rollback_on_an_empty_table_is_not_refused_but_one_with_rows_is(
    cli: Cli, db: Database
) -> None:
    use(cli, "rollback_lint_empty_table")
    assert cli("apply").returncode == 0
    assert cli("rollback").returncode == 0  # parcel is empty: ADD COLUMN NOT NULL works
    assert cli("rollback", "--to", "0").returncode == 0
    assert cli("apply").returncode == 0
    db.execute("INSERT INTO parcel VALUES (1)")
    refused = cli("rollback")
    assert refused.returncode == 1
    assert "MS202" in refused.stderr and "rollback refused" in refused.stderr


def test_an_initial_migration_without_down_is_a_warning_in_verify(cli: Cli) -> None:
    use(cli, "initial_without_down")
    done = cli("verify", "--allow-missing-down", "--json")
    assert done.returncode == 0, done.stderr
    steps = {step["version"]: step["result"] for step in report(done)["migrations"]}
    assert steps == {1: "warn", 2: "pass"}


@pytest.mark.parametrize(
    "pattern", ["mixed_qualified_names", "wrapped_file", "index_on_table_of_same_run"]
)
def test_directories_that_apply_cleanly_on_an_empty_database(
    cli: Cli, db: Database, pattern: str
) -> None:
    use(cli, pattern)
    done = cli("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    versions = {p.name.split("_")[0] for p in (PATTERNS / pattern).glob("*.up.sql")}
    assert db.scalar("SELECT count(*) FROM migrate_safe.applied") == len(versions)
    assert cli("verify").returncode == 0
