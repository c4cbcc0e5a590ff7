"""Catalog health queries shared by preflight (what already exists) and postflight (what the
run left behind): invalid indexes, unvalidated constraints and the orphan rows behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from migrate_safe.catalog import application_schema


@dataclass(frozen=True)
class InvalidIndex:
    index: str
    table: str


@dataclass(frozen=True)
class Unvalidated:
    table: str
    constraint: str
    kind: str  # "foreign key", "check" or "not null" (a catalog constraint from PostgreSQL 18)
    definition: str
    orphan_rows: int | None = None  # foreign keys only, when counted


def invalid_indexes(conn: psycopg.Connection[Any]) -> list[InvalidIndex]:
    """Indexes a failed CREATE/REINDEX CONCURRENTLY left behind: maintained on every write,
    never used for reads."""
    query = sql.SQL(
        "SELECT i.indexrelid::regclass::text AS index, i.indrelid::regclass::text AS table"
        " FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE NOT i.indisvalid AND {application} ORDER BY 1"
    ).format(application=application_schema())
    with conn.cursor(row_factory=class_row(InvalidIndex)) as cursor:
        return cursor.execute(query).fetchall()


def unvalidated_constraints(conn: psycopg.Connection[Any]) -> list[Unvalidated]:
    """NOT VALID foreign keys, checks and (PostgreSQL 18 on) NOT NULL constraints: old rows
    were never checked against them."""
    query = sql.SQL(
        "SELECT k.conrelid::regclass::text AS table, k.conname AS constraint,"
        " CASE k.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE 'not null' END"
        " AS kind, pg_get_constraintdef(k.oid) AS definition"
        " FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace"
        " WHERE NOT k.convalidated AND k.contype IN ('f', 'c', 'n') AND {application}"
        " ORDER BY 1, 2"
    ).format(application=application_schema())
    with conn.cursor(row_factory=class_row(Unvalidated)) as cursor:
        return cursor.execute(query).fetchall()


def count_orphans(conn: psycopg.Connection[Any], table: str, constraint: str) -> int:
    """Rows of `table` whose foreign key points nowhere: one anti-join, driven by the
    referenced table's key index, so it stays a hash or merge anti-join on large tables."""
    with conn.cursor(row_factory=class_row(_ForeignKey)) as cursor:
        key = cursor.execute(
            "SELECT k.conkey AS columns, k.confkey AS parent_columns,"
            " k.confrelid::regclass::text AS parent, k.confmatchtype AS match_type"
            " FROM pg_constraint k WHERE k.conrelid = %s::regclass AND k.conname = %s",
            [table, constraint],
        ).fetchone()
    if key is None:
        return 0
    child_columns = _column_names(conn, table, key.columns)
    parent_columns = _column_names(conn, key.parent, key.parent_columns)
    # MATCH SIMPLE (the default) ignores rows with any NULL in the key; MATCH FULL only
    # all-NULL rows, whose partial NULLs are caught by the constraint itself.
    null_test = " OR " if key.match_type != "f" else " AND "
    query = sql.SQL(
        "SELECT count(*) FROM {child} c WHERE NOT ({nulls}) AND NOT EXISTS"
        " (SELECT 1 FROM {parent} p WHERE {join})"
    ).format(
        child=_qualified(table),
        parent=_qualified(key.parent),
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


@dataclass(frozen=True)
class _ForeignKey:
    columns: list[int]
    parent_columns: list[int]
    parent: str  # regclass text, quoted as needed
    match_type: str  # f: MATCH FULL, s: SIMPLE, p: PARTIAL


def _column_names(conn: psycopg.Connection[Any], table: str, numbers: list[int]) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute a"
        " JOIN unnest(%s::int2[]) WITH ORDINALITY AS k(num, pos) ON k.num = a.attnum"
        " WHERE a.attrelid = %s::regclass ORDER BY k.pos",
        [numbers, table],
    ).fetchall()
    return [str(name) for (name,) in rows]


def _qualified(regclass_text: str) -> sql.Composable:
    """A regclass::text is already quoted as needed; parse it back into identifiers."""
    return sql.SQL(regclass_text)
