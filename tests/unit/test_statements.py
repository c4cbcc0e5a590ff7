from __future__ import annotations

import pytest

from migrate_safe.statements import (
    Relation,
    SqlSyntaxError,
    concurrent_index,
    split_statements,
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
