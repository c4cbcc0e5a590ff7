"""verify: every down undoes its up, proven by fingerprints on throwaway databases, each
migration on its own copy of the schema before it, every bad down found in one run."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import EXAMPLES, Cli, Database

pytestmark = pytest.mark.db


def scratch_databases_left(db: Database) -> object:
    return db.scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'migrate_safe_verify%'")


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
    assert scratch_databases_left(db) == 0
    assert db.scalar("SELECT to_regnamespace('migrate_safe')") is None  # target untouched
    # Each step's fingerprint is the schema its ups give: the last one can be pinned.
    applied = cli("apply", "--no-backup", migrations=EXAMPLES)
    assert applied.returncode == 0, applied.stderr
    pinned = report["migrations"][-1]["fingerprint"]
    assert cli("fingerprint", migrations=EXAMPLES).stdout.strip() == pinned


def write_three_bad_downs_among_six(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int, email text);", "DROP TABLE t;")
    cli.write(2, "index", "CREATE INDEX t_email ON t (email);", "SELECT 1; -- forgot the index")
    # After 2's bad down (index left behind) and a second up, this up would fail: only a
    # step checked on the schema its ups alone produce shows that it is fine.
    cli.write(
        3,
        "index_lower",
        "DROP INDEX t_email; CREATE INDEX t_email ON t (lower(email));",
        "DROP INDEX t_email; CREATE INDEX t_email ON t (email);",
    )
    cli.write(4, "name", "ALTER TABLE t ADD COLUMN name text;", "SELECT 1; -- forgot the column")
    cli.write(5, "u", "CREATE TABLE u (id int);", "DROP TABLE u;")
    cli.write(
        6, "view", "CREATE VIEW w AS SELECT id FROM t;", "DROP VIEW w; CREATE TABLE junk (x int);"
    )


def test_one_run_reports_every_bad_down_and_passes_the_others(cli: Cli, db: Database) -> None:
    write_three_bad_downs_among_six(cli)
    done = cli("verify", "--json")
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    results = {m["version"]: m["result"] for m in report["migrations"]}
    assert results == {1: "pass", 2: "fail", 3: "pass", 4: "fail", 5: "pass", 6: "fail"}
    assert report["not_run"] == []
    assert report["error"]["details"]["versions"] == [2, 4, 6]
    assert (
        "verify failed at 3 of 6 migrations: "
        "2_index: down did not restore the schema before up; "
        "4_name: down did not restore the schema before up; "
        "6_view: down did not restore the schema before up"
    ) in done.stderr
    # The summary table lists every step, then what each failing down left behind.
    assert "verify: 6 migration(s): 3 passed, 3 failed" in done.stderr
    assert "+ CREATE INDEX t_email ON public.t USING btree (email)" in done.stderr
    assert "+ public.t 0003 name text" in done.stderr
    assert "+ public.junk r" in done.stderr
    assert scratch_databases_left(db) == 0


def test_the_text_summary_is_a_table_of_all_steps(cli: Cli) -> None:
    write_three_bad_downs_among_six(cli)
    done = cli("verify")
    assert done.returncode == 2
    rows = [line.split() for line in done.stdout.splitlines()[2:9]]
    assert rows[0] == ["version", "name", "result", "up", "ms", "down", "ms", "problem"]
    assert [(row[0], row[2]) for row in rows[1:]] == [
        ("1", "pass"),
        ("2", "FAIL"),
        ("3", "pass"),
        ("4", "FAIL"),
        ("5", "pass"),
        ("6", "FAIL"),
    ]


def test_markdown_lists_every_step(cli: Cli) -> None:
    write_three_bad_downs_among_six(cli)
    done = cli("verify", "--markdown")
    assert done.returncode == 2
    assert "### migrate-safe verify: ❌ 3 failed" in done.stdout
    assert "| 3 | index_lower | ✅ pass |" in done.stdout
    assert "| 4 | name | ❌ fail |" in done.stdout


def test_an_up_that_fails_stops_the_steps_after_it(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    cli.write(2, "broken", "ALTER TABLE missing ADD COLUMN x int;", "SELECT 1;")
    cli.write(3, "later", "CREATE TABLE later (id int);", "DROP TABLE later;")
    done = cli("verify", "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert [(m["version"], m["result"]) for m in report["migrations"]] == [
        (1, "pass"),
        (2, "fail"),
        (3, "not_run"),
    ]
    broken, later = report["migrations"][1:]
    assert broken["failed_step"] == "up"
    assert "up failed: " in broken["problems"][0]
    assert 'relation "missing" does not exist' in broken["problems"][0]
    assert later["problems"] == ["not run — up of 2 failed"]
    assert report["not_run"] == [3]
    assert "verify failed at 2_broken: up failed" in done.stderr


def test_a_down_that_loses_a_trigger_comment_fails(cli: Cli) -> None:
    cli.write(
        1,
        "audit",
        "CREATE TABLE t (id int);"
        " CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;"
        " CREATE TRIGGER t_stamp BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION stamp();"
        " COMMENT ON TRIGGER t_stamp ON t IS 'keeps the audit trail';",
        "DROP TABLE t; DROP FUNCTION stamp();",
    )
    cli.write(
        2,
        "stamp_updates_too",
        "DROP TRIGGER t_stamp ON t; CREATE TRIGGER t_stamp BEFORE INSERT OR UPDATE ON t"
        " FOR EACH ROW EXECUTE FUNCTION stamp();"
        " COMMENT ON TRIGGER t_stamp ON t IS 'keeps the audit trail';",
        "DROP TRIGGER t_stamp ON t; CREATE TRIGGER t_stamp BEFORE INSERT ON t"
        " FOR EACH ROW EXECUTE FUNCTION stamp();",
    )
    done = cli("verify")
    assert done.returncode == 2
    assert "verify failed at 2_stamp_updates_too: down did not restore" in done.stderr
    assert "-- keeps the audit trail   (only in expected)" in done.stdout


def test_a_column_order_difference_is_named_as_such(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (a int, b text, c date);", "DROP TABLE t;")
    cli.write(2, "drop_b", "ALTER TABLE t DROP COLUMN b;", "ALTER TABLE t ADD COLUMN b text;")
    done = cli("verify")
    assert done.returncode == 2
    assert (
        "column order differs in table public.t: expected (a, b, c), actual (a, c, b)"
    ) in done.stdout
    assert "public.t 0002" not in done.stdout  # not as −/+ lines


PREREQUISITE = "CREATE SCHEMA billing;\nCREATE TABLE billing.accounts (id bigint PRIMARY KEY);\n"


def write_directory_assuming_billing(cli: Cli) -> None:
    cli.write(
        1,
        "invoices",
        "CREATE TABLE invoices (id bigint, account_id bigint REFERENCES billing.accounts (id));",
        "DROP TABLE invoices;",
    )
    cli.write(
        2,
        "note",
        "ALTER TABLE billing.accounts ADD COLUMN note text;",
        "ALTER TABLE billing.accounts DROP COLUMN note;",
    )


def test_setup_creates_what_the_directory_assumes(cli: Cli, db: Database) -> None:
    write_directory_assuming_billing(cli)
    without = cli("verify", "--json")
    assert without.returncode == 2
    assert [m["result"] for m in json.loads(without.stdout)["migrations"]] == ["fail", "not_run"]
    (cli.workdir / "prereq.sql").write_text(PREREQUISITE)
    done = cli("verify", "--setup", "prereq.sql", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [m["result"] for m in report["migrations"]] == ["pass", "pass"]
    assert report["setup"] == ["prereq.sql"]
    assert scratch_databases_left(db) == 0
    assert db.scalar("SELECT to_regnamespace('billing')") is None  # only in the scratch copies


def test_setup_from_the_settings_file(cli: Cli) -> None:
    write_directory_assuming_billing(cli)
    (cli.workdir / "sql").mkdir()
    (cli.workdir / "sql" / "schema.sql").write_text("CREATE SCHEMA billing;\n")
    (cli.workdir / "sql" / "accounts.sql").write_text(
        "CREATE TABLE billing.accounts (id bigint PRIMARY KEY);\n"
    )
    (cli.workdir / "migrate-safe.toml").write_text(
        '[verify]\nsetup = ["sql/schema.sql", "sql/accounts.sql"]\n'
    )
    done = cli("verify")
    assert done.returncode == 0, done.stderr + done.stdout


def test_a_bad_setup_file_is_a_config_error_naming_file_and_line(cli: Cli, db: Database) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    (cli.workdir / "prereq.sql").write_text(
        "CREATE SCHEMA billing;\n\nCREATE VIEW billing.totals AS\n    SELECT id FROM nowhere;\n"
    )
    done = cli("verify", "--setup", "prereq.sql")
    assert done.returncode == 5
    assert '--setup prereq.sql:4: relation "nowhere" does not exist (SQLSTATE 42P01)' in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert scratch_databases_left(db) == 0

    missing = cli("verify", "--setup", "nothing-here.sql")
    assert missing.returncode == 5
    assert "--setup nothing-here.sql: cannot read: No such file or directory" in missing.stderr

    (cli.workdir / "broken.sql").write_text("CREATE TABLE ok (id int);\nCREATE TABLE (;\n")
    broken = cli("verify", "--setup", "broken.sql")
    assert broken.returncode == 5
    assert "--setup broken.sql:2: syntax error" in broken.stderr


def test_verify_without_a_url_starts_its_own_postgres(cli: Cli) -> None:
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    env = cli.env()
    del env["DATABASE_URL"]
    done = subprocess.run(
        cli.command("verify"), env=env, cwd=cli.workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "verify passed: 1 migration(s)" in done.stderr
