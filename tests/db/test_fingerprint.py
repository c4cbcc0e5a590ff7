"""The schema fingerprint: stable for the same schema, different for any schema change."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from migrate_safe.backup import client_env
from migrate_safe.fingerprint import fingerprint
from migrate_safe.localpg import LocalPostgres
from tests.conftest import Cli, Database

pytestmark = pytest.mark.db

BASE = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE SEQUENCE invoice_numbers START 100;
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, mood mood DEFAULT 'ok');
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint REFERENCES customers (id),
    total int CHECK (total >= 0),
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
COMMENT ON TABLE orders IS 'one row per order';
"""

CHANGES = {
    "column added": "ALTER TABLE orders ADD COLUMN extra int",
    "column order": "ALTER TABLE customers DROP COLUMN email;"
    " ALTER TABLE customers ADD COLUMN email text NOT NULL",
    "type": "ALTER TABLE orders ALTER COLUMN note TYPE varchar(20)",
    "default": "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x'",
    "nullability": "ALTER TABLE orders ALTER COLUMN note SET NOT NULL",
    "constraint": "ALTER TABLE orders ADD CONSTRAINT note_len CHECK (length(note) < 9) NOT VALID",
    "index": "CREATE INDEX orders_note_idx ON orders (note)",
    "view": "CREATE OR REPLACE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 200",
    "function": "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN NEW.note := 'x'; RETURN NEW; END $$",
    "trigger": "DROP TRIGGER orders_touch ON orders",
    "sequence": "ALTER SEQUENCE invoice_numbers INCREMENT BY 5",
    "enum": "ALTER TYPE mood ADD VALUE 'happy'",
    "extension": "CREATE EXTENSION IF NOT EXISTS citext",
    "comment": "COMMENT ON COLUMN orders.note IS 'free text'",
}


def hash_of(db: Database) -> str:
    with db.connect() as conn:
        return fingerprint(conn, "migrate_safe").hash


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_kind_of_schema_change_changes_the_fingerprint(db: Database, change: str) -> None:
    db.execute(BASE)
    before = hash_of(db)
    assert hash_of(db) == before  # stable run to run
    db.execute(CHANGES[change])
    assert hash_of(db) != before


def test_data_sequence_positions_and_the_ledger_do_not_change_it(cli: Cli, db: Database) -> None:
    db.execute(BASE)
    before = hash_of(db)
    db.execute(
        "INSERT INTO customers VALUES (1, 'a@example.com');"
        "SELECT nextval('invoice_numbers');"
        "CREATE SCHEMA migrate_safe; CREATE TABLE migrate_safe.anything (x int);"
    )
    assert hash_of(db) == before


def test_fingerprint_is_identical_after_dump_and_restore_into_a_new_database(
    pg: LocalPostgres, db: Database
) -> None:
    db.execute(BASE + "ALTER TABLE orders DROP COLUMN note; ALTER TABLE orders ADD COLUMN z int;")
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db.name}_copy"')
    copy = Database(pg, f"{db.name}_copy")
    source_dsn, env = client_env(db.url)
    target_dsn, _ = client_env(copy.url)
    dump = subprocess.run(
        [pg.bin("pg_dump"), "--format=custom", "--dbname", source_dsn],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(
        [pg.bin("pg_restore"), "--dbname", target_dsn],
        env=env, input=dump.stdout, capture_output=True, check=True,
    )  # fmt: skip
    assert hash_of(copy) == hash_of(db)


def test_cli_prints_the_hash_alone_and_json_and_diff(
    cli: Cli, db: Database, pg: LocalPostgres
) -> None:
    db.execute(BASE)
    plain = cli("fingerprint")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == hash_of(db)
    document = json.loads(cli("fingerprint", "--json").stdout)
    assert document["fingerprint"] == hash_of(db)
    assert "public.orders 0004 note text" in document["objects"]["columns"]
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db.name}_b"')
    other = Database(pg, f"{db.name}_b")
    other.execute(BASE + "ALTER TABLE orders ADD COLUMN extra int;")
    different = cli("fingerprint", "--diff", db.url, other.url)
    assert different.returncode == 2
    assert "+ public.orders 0005 extra integer" in different.stdout
    assert pg.password not in different.stdout + different.stderr
