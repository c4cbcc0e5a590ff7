"""verify: every down undoes its up, proven by fingerprints on a throwaway database."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, Cli, Database

pytestmark = pytest.mark.db


def test_verify_passes_on_the_examples_and_leaves_no_scratch_database(
    cli: Cli, db: Database
) -> None:
    done = cli("verify", str(EXAMPLES), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [m["result"] for m in report["migrations"]] == ["pass"] * 8
    first = report["migrations"][0]
    assert "AccessExclusiveLock on public.customers" in first["locks"]
    assert "| 8 | validate_orders_coupon_fk | ✅ pass |" in report["markdown"]
    assert (
        db.scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'migrate_safe_verify%'") == 0
    )
    assert db.scalar("SELECT to_regnamespace('migrate_safe')") is None  # target untouched


def test_verify_fails_naming_a_down_that_forgets_an_index(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int, email text);", "DROP TABLE t;")
    cli.write(2, "index", "CREATE INDEX t_email ON t (email);", "SELECT 1; -- forgot the index")
    cli.write(3, "later", "CREATE TABLE later (id int);", "DROP TABLE later;")
    done = cli("verify", "--markdown")
    assert done.returncode == 2
    assert "verify failed at 2_index: down did not restore the schema before up" in done.stderr
    assert "CREATE INDEX t_email ON public.t USING btree (email)" in done.stdout
    assert "| 3 | later | not run |" in done.stdout


def test_verify_without_a_url_starts_its_own_postgres(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    env = cli.env()
    del env["DATABASE_URL"]
    import subprocess

    done = subprocess.run(cli.command("verify"), env=env, cwd=cli.workdir, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "verify passed: 1 migration(s)" in done.stderr
