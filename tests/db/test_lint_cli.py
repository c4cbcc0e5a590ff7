"""The lint command as CI runs it, and lint findings inside plan."""

from __future__ import annotations

import json
import shutil

import pytest

from migrate_safe.localpg import LocalPostgres
from tests.conftest import EXAMPLES, Cli

pytestmark = pytest.mark.db


def test_examples_lint_clean_in_every_format(cli: Cli) -> None:
    for path in EXAMPLES.glob("*.sql"):
        shutil.copy(path, cli.migrations)
    assert cli("lint", "--strict").returncode == 0
    sarif = json.loads(cli("lint", "--format", "sarif").stdout)
    assert sarif["version"] == "2.1.0"


def test_lint_errors_exit_1_with_github_annotations_and_pg_version_from_the_server(
    cli: Cli, pg: LocalPostgres
) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "idx", "CREATE INDEX t_id ON t (id);", "DROP INDEX t_id;")
    done = cli("lint", "--format", "github")
    assert done.returncode == 1
    assert "::error file=" in done.stdout and "title=MS101" in done.stdout
    report = json.loads(cli("lint", "--json").stdout)
    assert report["lint"]["pg_version"] == pg.major  # read from the server behind DATABASE_URL
    assert report["exit_code"] == 1


def test_plan_includes_lint_findings_for_pending_migrations(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    assert cli("apply", "--no-backup").returncode == 0
    cli.write(2, "idx", "CREATE INDEX t_id ON t (id);", "DROP INDEX t_id;")
    plan = json.loads(cli("plan", "--json").stdout)
    rules = {f["rule"] for f in plan["lint"]["findings"]}
    assert "MS101" in rules


def test_lint_without_a_database_keeps_the_error_and_says_when_it_bites(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "idx", "CREATE INDEX t_id ON t (id);", "DROP INDEX t_id;")
    cli.write(3, "cleanup", "DROP TABLE IF EXISTS nothing_here;", "SELECT 1;")
    done = cli("lint", "--database-url", "", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["lint"]["pg_version"] == 15  # lint's default: no server was asked
    found = {f["rule"]: f for f in report["lint"]["findings"]}
    assert found["MS101"]["severity"] == "error"
    assert found["MS101"]["message"].endswith(
        "how long it lasts grows with the table's rows; on a new or empty table it does not "
        "matter; table t is created by 001_t.up.sql: where both are pending it is new"
    )
    drop = found["MS401"]
    assert drop["severity"] == "error"
    assert "if nothing_here does not exist, IF EXISTS makes this a no-op" in drop["message"]


def test_plan_lints_only_the_up_files_that_would_run(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "CREATE INDEX ON t (id);")
    plan = json.loads(cli("plan", "--json").stdout)
    assert plan["lint"]["findings"] == []
