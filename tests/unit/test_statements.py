from __future__ import annotations

import pytest

from migrate_safe.statements import (
    Relation,
    SqlSyntaxError,
    concurrent_index,
    script_body,
    split_statements,
    statement_relations,
    touched_relations,
)


def test_split_keeps_dollar_quoted_bodies_whole_and_reports_start_lines() -> None:
    text = (
        "-- header\n"
        "CREATE TABLE a (id int);\n"
        "\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
        "INSERT INTO a VALUES (1);\n"
    )
    statements = split_statements(text)
    assert [s.line for s in statements] == [2, 4, 5]
    assert statements[1].sql.endswith("$$ SELECT 1; $$")


def test_syntax_error_maps_to_line_and_column() -> None:
    with pytest.raises(SqlSyntaxError) as raised:
        split_statements("SELECT 1;\nCREATE TABLE (id int);\n")
    assert (raised.value.line, raised.value.column) == (2, 14)


def test_touched_relations_include_schema_when_written() -> None:
    text = "ALTER TABLE shop.orders ADD COLUMN x int; UPDATE customers SET a = 1;"
    assert touched_relations(text) == {Relation("shop", "orders"), Relation(None, "customers")}


def test_concurrent_index_is_recognised_for_invalid_index_cleanup() -> None:
    assert concurrent_index("CREATE INDEX CONCURRENTLY i ON s.t (x)") == Relation("s", "i")
    assert concurrent_index("CREATE INDEX i ON t (x)") is None


def test_a_plain_wrapper_around_the_whole_file_is_dropped() -> None:
    for begin, end in [("BEGIN", "COMMIT"), ("START TRANSACTION", "END"), ("begin work", "commit")]:
        body = script_body(
            f"-- x\n{begin};\nCREATE TABLE t (id int);\n{end};\n", no_transaction=False
        )
        assert [s.sql for s in body.statements] == ["CREATE TABLE t (id int)"]
        assert body.wrapper is not None and not body.refused


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE t (id int);\nCOMMIT;\nCREATE TABLE u (id int);",
        "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\nCREATE TABLE u (id int);",
        "BEGIN;\nCREATE TABLE t (id int);\nROLLBACK;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE t (id int);\nCOMMIT;",
        "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT AND CHAIN;",
        "SAVEPOINT a;\nCREATE TABLE t (id int);\nRELEASE a;",
        "CREATE TABLE t (id int);\nROLLBACK TO SAVEPOINT a;",
        "PREPARE TRANSACTION 'x';",
        "COMMIT PREPARED 'x';",
        "ROLLBACK PREPARED 'x';",
        "ABORT;",
    ],
)
def test_any_other_transaction_control_is_refused(text: str) -> None:
    body = script_body(text, no_transaction=False)
    assert body.refused and body.wrapper is None


def test_no_transaction_files_refuse_even_a_wrapper() -> None:
    body = script_body("BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;", no_transaction=True)
    assert [c.keyword for c in body.refused] == ["BEGIN", "COMMIT"]


def test_statements_that_only_look_like_transaction_control_run() -> None:
    text = (
        "PREPARE p AS SELECT 1;\n"
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;\n"
        "END_TABLE_MARKER: SELECT 1;"
    )
    with pytest.raises(SqlSyntaxError):
        script_body(text, no_transaction=False)
    body = script_body(text.rsplit("\n", 1)[0], no_transaction=False)
    assert len(body.statements) == 2 and not body.refused


def test_a_big_insert_is_read_for_its_relations_without_parsing_every_row() -> None:
    rows = ",\n".join(f"({i}, 'it''s (row) {i}', \"x\")" for i in range(20_000))
    statement = f"INSERT INTO shop.big (id, note, other) VALUES {rows}"
    assert len(statement) > 256 * 1024
    assert statement_relations(statement) == {Relation("shop", "big")}
    with_subquery = statement + ", ((SELECT max(id) FROM shop.other), 'x', 'y')"
    assert statement_relations(with_subquery) == {
        Relation("shop", "big"),
        Relation("shop", "other"),
    }
