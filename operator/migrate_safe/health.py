"""Catalog health queries shared by preflight (what already exists) and postflight (what the
run left behind): invalid indexes, unvalidated constraints and the orphan rows behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"


@dataclass(frozen=True)
class Unvalidated:
    table: str
    constraint: str
    kind: str  # "foreign key", "check" or "not null" (a catalog constraint from PostgreSQL 18)
    definition: str
    orphan_rows: int | None = None  # foreign keys only, when counted


def invalid_indexes(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Indexes a failed CREATE/REINDEX CONCURRENTLY left behind: maintained on every write,
    never used for reads."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE NOT i.indisvalid AND {_USER_SCHEMAS} ORDER BY 1"
    ).fetchall()
    return [{"index": str(r[0]), "table": str(r[1])} for r in rows]


def unvalidated_constraints(conn: psycopg.Connection[Any]) -> list[Unvalidated]:
    """NOT VALID foreign keys, checks and (PostgreSQL 18 on) NOT NULL constraints: old rows
    were never checked against them."""
    rows = conn.execute(
        "SELECT k.conrelid::regclass::text, k.conname, k.contype, pg_get_constraintdef(k.oid)"
        " FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace"
        f" WHERE NOT k.convalidated AND k.contype IN ('f', 'c', 'n') AND {_USER_SCHEMAS}"
        " ORDER BY 1, 2"
    ).fetchall()
    kinds = {"f": "foreign key", "c": "check", "n": "not null"}
    return [Unvalidated(str(r[0]), str(r[1]), kinds[str(r[2])], str(r[3])) for r in rows]


def count_orphans(conn: psycopg.Connection[Any], table: str, constraint: str) -> int:
    """Rows of `table` whose foreign key points nowhere: one anti-join, driven by the
    referenced table's key index, so it stays a hash or merge anti-join on large tables."""
    row = conn.execute(
        "SELECT k.conkey, k.confkey, k.confrelid::regclass::text, k.confmatchtype"
        " FROM pg_constraint k WHERE k.conrelid = %s::regclass AND k.conname = %s",
        [table, constraint],
    ).fetchone()
    if row is None:
        return 0
    child_columns = _column_names(conn, table, list(row[0]))
    parent_columns = _column_names(conn, str(row[2]), list(row[1]))
    # MATCH SIMPLE (the default) ignores rows with any NULL in the key; MATCH FULL only
    # all-NULL rows, whose partial NULLs are caught by the constraint itself.
    null_test = " OR " if row[3] != "f" else " AND "
    query = sql.SQL(
        "SELECT count(*) FROM {child} c WHERE NOT ({nulls}) AND NOT EXISTS"
        " (SELECT 1 FROM {parent} p WHERE {join})"
    ).format(
        child=_qualified(table),
        parent=_qualified(str(row[2])),
        nulls=sql.SQL(null_test).join(
            sql.SQL("c.{} IS NULL").format(sql.Identifier(c)) for c in child_columns
        ),
        join=sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
            for p, c in zip(parent_columns, child_columns, strict=True)
        ),
    )
    counted = conn.execute(query).fetchone()
    return int(counted[0]) if counted else 0


def _column_names(conn: psycopg.Connection[Any], table: str, numbers: list[int]) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute a"
        " JOIN unnest(%s::int2[]) WITH ORDINALITY AS k(num, pos) ON k.num = a.attnum"
        " WHERE a.attrelid = %s::regclass ORDER BY k.pos",
        [numbers, table],
    ).fetchall()
    return [str(r[0]) for r in rows]


def _qualified(regclass_text: str) -> sql.Composable:
    """A regclass::text is already quoted as needed; parse it back into identifiers."""
    return sql.SQL(regclass_text)
