"""The schema fingerprint: stable for the same schema, different for any schema change.

BASE creates one object of every kind `pg_dump --schema-only` writes (except a subscription,
which a database cannot be dropped with: see its own test). Each change and each comment below
must change the fingerprint; the same schema dumped and restored must keep it. Changes run in
a transaction that is rolled back, so one database with BASE serves the whole module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migrate_safe.backup import client_env
from migrate_safe.fingerprint import Fingerprint, describe_diff, diff, fingerprint, sections
from migrate_safe.localpg import SERVICE_USER, LocalPostgres
from tests.conftest import Cli, Database

pytestmark = pytest.mark.db

BASE = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE SCHEMA app;
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE DOMAIN posint AS int CONSTRAINT posint_positive CHECK (VALUE > 0);
CREATE TYPE floatrange AS RANGE (SUBTYPE = float8, SUBTYPE_DIFF = float8mi);
CREATE TYPE pair AS (a int, b text);
CREATE TYPE tag;
CREATE FUNCTION tag_in(cstring) RETURNS tag LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION tag_out(tag) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE TYPE tag (INPUT = tag_in, OUTPUT = tag_out, LIKE = text);
CREATE COLLATION c_copy (provider = libc, locale = 'C');
CREATE CONVERSION latin1_to_utf8 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
CREATE CAST (tag AS text) WITHOUT FUNCTION;
CREATE SEQUENCE invoice_numbers START 100;
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, mood mood DEFAULT 'ok');
CREATE INDEX customers_lower_email ON customers (lower(email));
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint REFERENCES customers (id),
    total int CHECK (total >= 0),
    note text,
    total_cents int GENERATED ALWAYS AS (total * 100) STORED
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX events_at ON ONLY events (at);
CREATE INDEX events_2024_at ON events_2024 (at);
CREATE TABLE base_items (id int);
CREATE TYPE pair_row AS (id int);
CREATE TABLE special_items (extra text) INHERITS (base_items);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
CREATE MATERIALIZED VIEW order_totals AS
    SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id WITH NO DATA;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE PROCEDURE noop() LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE total_sum(int) (SFUNC = int4pl, STYPE = int, INITCOND = '0');
CREATE RULE customers_keep AS ON DELETE TO customers WHERE old.id = 0 DO INSTEAD NOTHING;
CREATE POLICY positive_only ON orders USING (total > 0);
CREATE FUNCTION ddl_noop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE EVENT TRIGGER ddl_noop ON ddl_command_end EXECUTE FUNCTION ddl_noop();
CREATE FUNCTION int_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS $$ SELECT $1 = $2 $$;
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int_eq);
CREATE OPERATOR FAMILY int_family USING btree;
CREATE OPERATOR CLASS int_hash_ops FOR TYPE int USING hash AS
    OPERATOR 1 ===, FUNCTION 1 hashint4(int);
CREATE TEXT SEARCH TEMPLATE simple_copy (INIT = dsimple_init, LEXIZE = dsimple_lexize);
CREATE TEXT SEARCH DICTIONARY simple_dict (TEMPLATE = simple_copy);
CREATE TEXT SEARCH PARSER default_copy
    (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype);
CREATE TEXT SEARCH CONFIGURATION plain (PARSER = default_copy);
ALTER TEXT SEARCH CONFIGURATION plain ADD MAPPING FOR asciiword WITH simple_dict;
CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER remote FOREIGN DATA WRAPPER dummy_fdw OPTIONS (host 'db.example');
CREATE USER MAPPING FOR PUBLIC SERVER remote OPTIONS (user 'app');
CREATE FOREIGN TABLE remote_orders (id int OPTIONS (column_name 'order_id'))
    SERVER remote OPTIONS (table_name 'orders');
CREATE PUBLICATION order_changes FOR TABLE orders;
CREATE STATISTICS orders_stats (dependencies) ON customer_id, total FROM orders;
CREATE ACCESS METHOD heap_copy TYPE TABLE HANDLER heap_tableam_handler;
CREATE FUNCTION tag_from_sql(internal) RETURNS internal LANGUAGE internal IMMUTABLE AS 'int4in';
CREATE FUNCTION tag_to_sql(internal) RETURNS tag LANGUAGE internal IMMUTABLE AS 'textin';
CREATE TRANSFORM FOR tag LANGUAGE plpgsql
    (FROM SQL WITH FUNCTION tag_from_sql(internal), TO SQL WITH FUNCTION tag_to_sql(internal));
CREATE FUNCTION plcopy_handler() RETURNS language_handler LANGUAGE c
    AS '$libdir/plpgsql', 'plpgsql_call_handler';
CREATE LANGUAGE plcopy HANDLER plcopy_handler;
COMMENT ON TABLE orders IS 'one row per order';
"""

# One change of every kind of object, and of every property pg_dump writes for it.
CHANGES = {
    "schema": "CREATE SCHEMA reports",
    "extension": "CREATE EXTENSION IF NOT EXISTS citext",
    "table": "CREATE TABLE audit (id int)",
    "table unlogged": "ALTER TABLE base_items SET UNLOGGED",
    "typed table": "ALTER TABLE base_items OF pair_row",
    "table access method": "ALTER TABLE base_items SET ACCESS METHOD heap_copy",
    "table storage parameter": "ALTER TABLE orders SET (fillfactor = 70)",
    "toast storage parameter": "ALTER TABLE orders SET (toast.autovacuum_enabled = false)",
    "table replica identity": "ALTER TABLE orders REPLICA IDENTITY FULL",
    "table replica identity index": "ALTER TABLE customers REPLICA IDENTITY USING INDEX"
    " customers_pkey",
    "table row level security": "ALTER TABLE orders ENABLE ROW LEVEL SECURITY",
    "table force row level security": "ALTER TABLE orders FORCE ROW LEVEL SECURITY",
    "inheritance": "ALTER TABLE special_items NO INHERIT base_items",
    "partition detached": "ALTER TABLE events DETACH PARTITION events_2024",
    "partition bound": "ALTER TABLE events DETACH PARTITION events_2024;"
    " ALTER TABLE events ATTACH PARTITION events_2024 FOR VALUES FROM ('2024-01-01')"
    " TO ('2024-07-01')",
    "column added": "ALTER TABLE orders ADD COLUMN extra int",
    "column order": "ALTER TABLE customers DROP COLUMN email;"
    " ALTER TABLE customers ADD COLUMN email text NOT NULL",
    "column type": "ALTER TABLE orders ALTER COLUMN note TYPE varchar(20)",
    "column default": "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x'",
    "column nullability": "ALTER TABLE orders ALTER COLUMN note SET NOT NULL",
    "column generated expression": "ALTER TABLE orders DROP COLUMN total_cents;"
    " ALTER TABLE orders ADD COLUMN total_cents int GENERATED ALWAYS AS (total * 1000) STORED",
    "column identity": "ALTER TABLE orders ALTER COLUMN id SET GENERATED BY DEFAULT",
    "column collation": "ALTER TABLE orders ALTER COLUMN note TYPE text COLLATE c_copy",
    "column storage": "ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL",
    "column compression": "ALTER TABLE orders ALTER COLUMN note SET COMPRESSION pglz",
    "column statistics": "ALTER TABLE orders ALTER COLUMN note SET STATISTICS 500",
    "column options": "ALTER TABLE orders ALTER COLUMN note SET (n_distinct = 10)",
    "foreign table column options": "ALTER FOREIGN TABLE remote_orders ALTER COLUMN id"
    " OPTIONS (SET column_name 'id')",
    "composite type attribute": "ALTER TYPE pair ADD ATTRIBUTE c int",
    "constraint": "ALTER TABLE orders ADD CONSTRAINT note_len CHECK (length(note) < 9) NOT VALID",
    "domain constraint": "ALTER DOMAIN posint ADD CONSTRAINT posint_small CHECK (VALUE < 1000)",
    "index": "CREATE INDEX orders_note_idx ON orders (note)",
    "index storage parameter": "ALTER INDEX orders_customer_idx SET (fillfactor = 50)",
    "index clustered": "ALTER TABLE orders CLUSTER ON orders_customer_idx",
    "index statistics": "ALTER INDEX customers_lower_email ALTER COLUMN 1 SET STATISTICS 100",
    "index attached to partitioned index": "ALTER INDEX events_at ATTACH PARTITION events_2024_at",
    "view": "CREATE OR REPLACE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 200",
    "view option": "ALTER VIEW big_orders SET (security_barrier = true)",
    "materialized view": "DROP MATERIALIZED VIEW order_totals; CREATE MATERIALIZED VIEW"
    " order_totals AS SELECT customer_id FROM orders WITH NO DATA",
    "function": "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN NEW.note := 'x'; RETURN NEW; END $$",
    "function attribute": "ALTER FUNCTION int_eq(int, int) STABLE",
    "procedure": "ALTER PROCEDURE noop() SECURITY DEFINER",
    "aggregate": "CREATE OR REPLACE AGGREGATE total_sum(int)"
    " (SFUNC = int4pl, STYPE = int, INITCOND = '1')",
    "trigger": "DROP TRIGGER orders_touch ON orders",
    "trigger disabled": "ALTER TABLE orders DISABLE TRIGGER orders_touch",
    "trigger enabled always": "ALTER TABLE orders ENABLE ALWAYS TRIGGER orders_touch",
    "rule": "CREATE OR REPLACE RULE customers_keep AS ON DELETE TO customers WHERE old.id = 1"
    " DO INSTEAD NOTHING",
    "rule disabled": "ALTER TABLE customers DISABLE RULE customers_keep",
    "event trigger disabled": "ALTER EVENT TRIGGER ddl_noop DISABLE",
    "policy": "ALTER POLICY positive_only ON orders USING (total > 1)",
    "policy roles": "ALTER POLICY positive_only ON orders TO pg_monitor",
    "sequence": "ALTER SEQUENCE invoice_numbers INCREMENT BY 5",
    "sequence owned by": "ALTER SEQUENCE invoice_numbers OWNED BY orders.note",
    "sequence unlogged": "ALTER SEQUENCE invoice_numbers SET UNLOGGED",
    "identity sequence": "ALTER TABLE orders ALTER COLUMN id SET INCREMENT BY 2",
    "enum": "ALTER TYPE mood ADD VALUE 'happy'",
    "domain default": "ALTER DOMAIN posint SET DEFAULT 1",
    "domain not null": "ALTER DOMAIN posint SET NOT NULL",
    "range type": "DROP TYPE floatrange; CREATE TYPE floatrange AS RANGE (SUBTYPE = float8)",
    "base type": "ALTER TYPE tag SET (STORAGE = external)",
    "shell type": "CREATE TYPE later_type",
    "collation": 'CREATE COLLATION posix_copy FROM "POSIX"',
    "conversion": "ALTER CONVERSION latin1_to_utf8 RENAME TO latin1_utf8",
    "cast": "DROP CAST (tag AS text); CREATE CAST (tag AS text) WITHOUT FUNCTION AS IMPLICIT",
    "operator": "ALTER OPERATOR === (int, int) SET (RESTRICT = eqsel)",
    "operator class": "CREATE OPERATOR CLASS int_btree_ops FOR TYPE int USING btree"
    " FAMILY int_family AS OPERATOR 1 <, FUNCTION 1 btint4cmp(int, int)",
    "operator family": "ALTER OPERATOR FAMILY int_family USING btree"
    " ADD OPERATOR 1 < (int, int), FUNCTION 1 btint4cmp(int, int)",
    "text search configuration": "ALTER TEXT SEARCH CONFIGURATION plain"
    " ADD MAPPING FOR word WITH simple_dict",
    "text search dictionary": "ALTER TEXT SEARCH DICTIONARY simple_dict (ACCEPT = false)",
    "text search parser": "ALTER TEXT SEARCH PARSER default_copy RENAME TO default_copy2",
    "text search template": "ALTER TEXT SEARCH TEMPLATE simple_copy RENAME TO simple_copy2",
    "foreign data wrapper": "ALTER FOREIGN DATA WRAPPER dummy_fdw OPTIONS (ADD debug 'true')",
    "foreign server": "ALTER SERVER remote OPTIONS (SET host 'other.example')",
    "user mapping": "CREATE USER MAPPING FOR CURRENT_USER SERVER remote",
    "foreign table": "ALTER FOREIGN TABLE remote_orders OPTIONS (SET table_name 'orders_v2')",
    "publication table": "ALTER PUBLICATION order_changes ADD TABLE customers",
    "publication option": "ALTER PUBLICATION order_changes SET (publish = 'insert')",
    "publication row filter": "ALTER PUBLICATION order_changes SET TABLE orders WHERE (total > 0)",
    "publication column list": "ALTER PUBLICATION order_changes SET TABLE orders (id, total)",
    "publication schema": "ALTER PUBLICATION order_changes ADD TABLES IN SCHEMA app",
    "statistics object": "ALTER STATISTICS orders_stats SET STATISTICS 500",
    "access method": "CREATE ACCESS METHOD heap_other TYPE TABLE HANDLER heap_tableam_handler",
    "transform": "DROP TRANSFORM FOR tag LANGUAGE plpgsql",
    "language": "CREATE OR REPLACE TRUSTED LANGUAGE plcopy HANDLER plcopy_handler",
}

# The changes a property only some majors have: an older major refuses them, so there is
# nothing there for the fingerprint to miss.
SINCE = {
    "column compression": 14,
    "publication column list": 15,
    "publication row filter": 15,
    "publication schema": 15,
    "sequence unlogged": 15,
    "table access method": 15,
}

# A comment on every kind of object that can carry one.
COMMENTS = {
    "schema": "SCHEMA app",
    "extension": "EXTENSION pg_trgm",
    "table": "TABLE customers",
    "partitioned table": "TABLE events",
    "column": "COLUMN orders.note",
    "constraint": "CONSTRAINT orders_total_check ON orders",
    "domain constraint": "CONSTRAINT posint_positive ON DOMAIN posint",
    "index": "INDEX orders_customer_idx",
    "view": "VIEW big_orders",
    "view column": "COLUMN big_orders.total",
    "materialized view": "MATERIALIZED VIEW order_totals",
    "foreign table": "FOREIGN TABLE remote_orders",
    "sequence": "SEQUENCE invoice_numbers",
    "function": "FUNCTION touch()",
    "procedure": "PROCEDURE noop()",
    "aggregate": "AGGREGATE total_sum(int)",
    "trigger": "TRIGGER orders_touch ON orders",
    "event trigger": "EVENT TRIGGER ddl_noop",
    "rule": "RULE customers_keep ON customers",
    "policy": "POLICY positive_only ON orders",
    "enum": "TYPE mood",
    "domain": "DOMAIN posint",
    "range type": "TYPE floatrange",
    "composite type": "TYPE pair",
    "composite type attribute": "COLUMN pair.a",
    "base type": "TYPE tag",
    "collation": "COLLATION c_copy",
    "conversion": "CONVERSION latin1_to_utf8",
    "cast": "CAST (tag AS text)",
    "operator": "OPERATOR === (int, int)",
    "operator class": "OPERATOR CLASS int_hash_ops USING hash",
    "operator family": "OPERATOR FAMILY int_family USING btree",
    "text search configuration": "TEXT SEARCH CONFIGURATION plain",
    "text search dictionary": "TEXT SEARCH DICTIONARY simple_dict",
    "text search parser": "TEXT SEARCH PARSER default_copy",
    "text search template": "TEXT SEARCH TEMPLATE simple_copy",
    "foreign data wrapper": "FOREIGN DATA WRAPPER dummy_fdw",
    "foreign server": "SERVER remote",
    "publication": "PUBLICATION order_changes",
    "statistics object": "STATISTICS orders_stats",
    "access method": "ACCESS METHOD heap_copy",
    "transform": "TRANSFORM FOR tag LANGUAGE plpgsql",
    "language": "LANGUAGE plcopy",
}

SUBSCRIPTION = (
    "CREATE SUBSCRIPTION order_feed CONNECTION 'dbname=nowhere password=s3cr3t'"
    " PUBLICATION order_changes WITH (connect = false, slot_name = NONE)"
)


LEDGER = "migrate_safe"


def read(db: Database) -> Fingerprint:
    with db.connect() as conn:
        return fingerprint(conn, LEDGER)


def hash_of(db: Database) -> str:
    return read(db).hash


def _admin(pg: LocalPostgres) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.url(), autocommit=True)


@pytest.fixture(scope="module")
def base(pg: LocalPostgres) -> Iterator[Database]:
    """One database holding BASE for the module; each test's change is rolled back."""
    name = f"fp_base_{uuid.uuid4().hex[:8]}"
    with _admin(pg) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(pg, name)
    database.execute(BASE)
    yield database
    with _admin(pg) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def before_and_after(base: Database, change: str) -> tuple[Fingerprint, Fingerprint]:
    """The fingerprint before `change` and with it, in a transaction that is rolled back."""
    with base.connect() as conn:
        before = fingerprint(conn, LEDGER)
        assert fingerprint(conn, LEDGER).hash == before.hash  # stable run to run
        with conn.transaction(force_rollback=True):
            conn.execute(change.encode())
            return before, fingerprint(conn, LEDGER)


def test_base_has_an_object_in_every_section_but_subscriptions(base: Database) -> None:
    """Guards the tests below: a section with nothing in BASE would prove nothing."""
    current = read(base)
    with base.connect() as conn:
        assert set(current.sections) == set(sections(conn.info.server_version // 10000))
    empty = sorted(name for name, lines in current.sections.items() if not lines)
    assert empty == ["subscriptions"]


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_kind_of_schema_change_changes_the_fingerprint(
    base: Database, pg: LocalPostgres, change: str
) -> None:
    if pg.major < SINCE.get(change, 0):
        with pytest.raises(psycopg.errors.ProgrammingError):
            before_and_after(base, CHANGES[change])
        return
    before, after = before_and_after(base, CHANGES[change])
    assert after.hash != before.hash


@pytest.mark.parametrize("kind", sorted(COMMENTS))
def test_a_comment_on_every_commentable_kind_changes_the_fingerprint(
    base: Database, kind: str
) -> None:
    before, after = before_and_after(base, f"COMMENT ON {COMMENTS[kind]} IS 'said once'")
    assert after.hash != before.hash
    assert any("said once" in line for lines in after.sections.values() for line in lines)


def test_a_subscription_and_its_comment_change_it_without_its_password(
    base: Database, pg: LocalPostgres
) -> None:
    before, subscribed = before_and_after(base, SUBSCRIPTION)
    assert subscribed.hash != before.hash
    assert subscribed.sections["subscriptions"] == [
        "order_feed publications (order_changes) slot none"
    ]
    comment = "; COMMENT ON SUBSCRIPTION order_feed IS 'from billing'"
    _, commented = before_and_after(base, SUBSCRIPTION + comment)
    # Up to 13 only a superuser may read a subscription's oid, which finds its comment.
    assert (commented.hash != subscribed.hash) == (pg.major >= 14)
    assert "s3cr3t" not in json.dumps(commented.as_dict())


def test_user_mapping_options_never_reach_the_fingerprint(base: Database) -> None:
    """They hold passwords, and only privileged roles may read them."""
    change = "ALTER USER MAPPING FOR PUBLIC SERVER remote OPTIONS (ADD password 's3cr3t')"
    before, after = before_and_after(base, change)
    assert after.hash == before.hash
    assert "user mapping for public server remote" in after.sections["foreign_data"]
    assert "s3cr3t" not in json.dumps(after.as_dict())


def test_a_role_without_privileges_reads_the_same_fingerprint(base: Database) -> None:
    with base.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS fingerprint_reader")
        conn.execute("CREATE ROLE fingerprint_reader LOGIN PASSWORD 'reader'")
    try:
        url = make_conninfo(base.url, user="fingerprint_reader", password="reader")
        with psycopg.connect(url, autocommit=True) as conn:
            as_reader = fingerprint(conn, LEDGER)
        assert as_reader.hash == read(base).hash
    finally:
        with base.connect() as conn:
            conn.execute("DROP ROLE fingerprint_reader")


@pytest.fixture(scope="module")
def tablespace(pg: LocalPostgres) -> Iterator[str]:
    """A tablespace in the test server's directory."""
    name = f"ts_{uuid.uuid4().hex[:8]}"
    location = pg.root / name
    location.mkdir()
    if pg.as_service_user:
        shutil.chown(location, user=SERVICE_USER)
    with _admin(pg) as admin:
        admin.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(location))
            )
        )
    yield name
    with _admin(pg) as admin:
        admin.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("what", ["TABLE orders", "INDEX orders_customer_idx"])
def test_moving_a_table_or_index_to_another_tablespace_changes_it(
    tablespace: str, base: Database, what: str
) -> None:
    before, after = before_and_after(base, f"ALTER {what} SET TABLESPACE {tablespace}")
    assert after.hash != before.hash


def test_data_sequence_positions_grants_and_the_ledger_do_not_change_it(
    base: Database,
) -> None:
    before, after = before_and_after(
        base,
        "INSERT INTO customers VALUES (1, 'a@example.com');"
        "SELECT nextval('invoice_numbers');"
        "REFRESH MATERIALIZED VIEW order_totals;"
        "CREATE SCHEMA migrate_safe; CREATE TABLE migrate_safe.anything (x int);"
        "GRANT SELECT ON orders TO pg_monitor;",
    )
    assert after.hash == before.hash


def test_fingerprint_is_identical_after_dump_and_restore_into_a_new_database(
    pg: LocalPostgres, db: Database
) -> None:
    db.execute(BASE + "ALTER TABLE orders DROP COLUMN note; ALTER TABLE orders ADD COLUMN z int;")
    with _admin(pg) as admin:
        admin.execute(f'CREATE DATABASE "{db.name}_copy"')
    copy = Database(pg, f"{db.name}_copy")
    try:
        source_dsn, env = client_env(db.url)
        target_dsn, _ = client_env(copy.url)
        dump = subprocess.run(
            [pg.bin("pg_dump"), "--format=custom", "--dbname", source_dsn],
            env=env,
            capture_output=True,
            check=True,
        )
        restored = subprocess.run(
            [pg.bin("pg_restore"), "--exit-on-error", "--dbname", target_dsn],
            env=env,
            input=dump.stdout,
            capture_output=True,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr.decode()
        assert describe_diff(diff(read(db), read(copy)), "original", "restored") == ""
        assert hash_of(copy) == hash_of(db)
    finally:
        with _admin(pg) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{copy.name}" WITH (FORCE)')


def test_a_column_order_difference_is_named_as_such(base: Database) -> None:
    change = CHANGES["column order"] + "; ALTER TABLE orders ADD COLUMN extra int"
    text = describe_diff(diff(*before_and_after(base, change)), "expected", "actual")
    assert (
        "column order differs in table public.customers: expected (id, email, mood), "
        "actual (id, mood, email)"
    ) in text
    assert "public.customers 0002" not in text  # no −/+ lines for the reordered table
    assert "+ public.orders 0006 extra integer" in text  # other changes still listed


def test_column_order_is_told_apart_from_a_changed_column_in_quoted_names() -> None:
    def columns(*lines: str) -> Fingerprint:
        return Fingerprint("", {"columns": list(lines)})

    expected = columns('"my app"."Orders" 0001 id integer', '"my app"."Orders" 0002 "a b" text')
    swapped = columns('"my app"."Orders" 0001 "a b" text', '"my app"."Orders" 0002 id integer')
    changed = columns('"my app"."Orders" 0001 "a b" text', '"my app"."Orders" 0002 id bigint')
    (reordered,) = diff(expected, swapped)
    assert reordered.reordered == [
        {"table": '"my app"."Orders"', "first": ["id", '"a b"'], "second": ['"a b"', "id"]}
    ]
    assert reordered.only_in_first == reordered.only_in_second == []
    (different,) = diff(expected, changed)
    assert different.reordered == []
    assert len(different.only_in_first) == len(different.only_in_second) == 2


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
    with _admin(pg) as admin:
        admin.execute(f'CREATE DATABASE "{db.name}_b"')
    other = Database(pg, f"{db.name}_b")
    other.execute(BASE + "ALTER TABLE orders ADD COLUMN extra int;")
    different = cli("fingerprint", "--diff", db.url, other.url)
    assert different.returncode == 2
    assert "+ public.orders 0006 extra integer" in different.stdout
    assert pg.password not in different.stdout + different.stderr
    with _admin(pg) as admin:
        admin.execute(f'DROP DATABASE "{other.name}" WITH (FORCE)')


def test_catalog_columns_older_servers_lack_are_only_read_on_newer_ones() -> None:
    """Only PostgreSQL 15 runs here: this keeps the queries for 13 to 18 honest."""
    newer_than = {
        "attcompression": 14,
        "rngmultitypid": 14,
        "prqual": 15,
        "pg_publication_namespace": 15,
        "colliculocale": 15,
        "collicurules": 16,
        "colllocale": 17,
    }
    for major in range(13, 19):
        text = "\n".join(sections(major).values())
        for column, since in newer_than.items():
            assert (column in text) == (major >= since and not _renamed(column, major)), (
                column,
                major,
            )


def _renamed(column: str, major: int) -> bool:
    return column == "colliculocale" and major >= 17  # became colllocale
