"""Column types that are cheap to choose well now and expensive to change later (info)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.model import Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.sqlast import ColumnType, ParsedStatement, column_constraints

TypeProblem = Callable[[ColumnType, ast.ColumnDef], str | None]


def _type_rule(rule: Rule, problem: TypeProblem) -> None:
    def check(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
        for where, found, column in statement.declared_columns:
            message = problem(found, column)
            if message:
                yield Hit(f"{where}: {message}")

    statement_rule(
        rule, ast.CreateStmt, AlterTableType.AT_AddColumn, AlterTableType.AT_AlterColumnType
    )(check)


def _limited_varchar(found: ColumnType, column: ast.ColumnDef) -> str | None:
    if found.name == "varchar" and found.modifiers:
        return f"{found} limits the length in the type; changing it later needs a rewrite"
    return None


def _timestamp_without_zone(found: ColumnType, column: ast.ColumnDef) -> str | None:
    if found.name == "timestamp":
        return "timestamp without time zone stores no offset; instants become ambiguous"
    return None


def _json(found: ColumnType, column: ast.ColumnDef) -> str | None:
    if found.name == "json":
        return "json has no equality operator (DISTINCT, UNION and GROUP BY fail); use jsonb"
    return None


_KEY_LIMITS = {
    "int2": 32_767,
    "smallserial": 32_767,
    "int4": 2_147_483_647,
    "serial": 2_147_483_647,
}


def _small_key(found: ColumnType, column: ast.ColumnDef) -> str | None:
    limit = _KEY_LIMITS.get(found.name)
    keyed = found.name in ("serial", "smallserial") or column_constraints(
        column, ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_IDENTITY
    )
    if limit is not None and keyed:
        return f"a {found} key runs out after {limit:,} ids; use bigint"
    return None


_type_rule(
    Rule(
        id="MS801",
        name="prefer-text-over-varchar",
        severity=Severity.INFO,
        family="hygiene",
        summary="varchar(n) puts a length limit in the type; shrinking it later rewrites the "
        "table, growing it needs ACCESS EXCLUSIVE",
        safe_alternative="text with CHECK (char_length(col) <= n) NOT VALID; a CHECK can be "
        "replaced without a rewrite",
        lock="none now; a later length change takes ACCESS EXCLUSIVE (shrinking also scans or "
        "rewrites)",
        why="Limits change with the business. Changing a CHECK is a NOT VALID add plus a "
        "VALIDATE under SHARE UPDATE EXCLUSIVE; changing the type is not.",
        unsafe_example="ALTER TABLE customers ADD COLUMN nickname varchar(40);",
        safe_example="ALTER TABLE customers ADD COLUMN nickname text;\n"
        "ALTER TABLE customers ADD CONSTRAINT customers_nickname_length\n"
        "    CHECK (char_length(nickname) <= 40) NOT VALID;",
    ),
    _limited_varchar,
)
_type_rule(
    Rule(
        id="MS802",
        name="prefer-timestamptz",
        severity=Severity.INFO,
        family="hygiene",
        summary="timestamp without time zone loses the offset of the instant stored",
        safe_alternative="timestamptz",
        lock="none now; converting later rewrites the table unless TimeZone is UTC",
        why="Values are stored as written, so the same instant written from two time zones "
        "differs, and daylight-saving hours are ambiguous.",
        unsafe_example="ALTER TABLE orders ADD COLUMN shipped_at timestamp;",
        safe_example="ALTER TABLE orders ADD COLUMN shipped_at timestamptz;",
    ),
    _timestamp_without_zone,
)
_type_rule(
    Rule(
        id="MS803",
        name="prefer-jsonb",
        severity=Severity.INFO,
        family="hygiene",
        summary="json has no equality operator and is re-parsed on every access",
        safe_alternative="jsonb",
        lock="none now; converting later rewrites the table",
        why="Queries with DISTINCT, UNION or GROUP BY over a json column fail, and it cannot "
        "be indexed with GIN.",
        unsafe_example="ALTER TABLE orders ADD COLUMN payload json;",
        safe_example="ALTER TABLE orders ADD COLUMN payload jsonb;",
    ),
    _json,
)
_type_rule(
    Rule(
        id="MS804",
        name="prefer-bigint-keys",
        severity=Severity.INFO,
        family="hygiene",
        summary="An integer or smallint key (serial, identity or primary key) can run out",
        safe_alternative="bigint GENERATED ALWAYS AS IDENTITY",
        lock="none now; widening later rewrites the table and every referencing table",
        why="int4 stops at 2,147,483,647; ids are consumed by rolled-back inserts too. Changing "
        "the type later rewrites the table and all foreign keys pointing at it.",
        unsafe_example="CREATE TABLE events (id serial PRIMARY KEY, payload jsonb);",
        safe_example="CREATE TABLE events (\n"
        "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    payload jsonb\n);",
    ),
    _small_key,
)
