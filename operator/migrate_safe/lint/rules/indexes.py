"""Index builds, drops and rebuilds: the plain forms lock the table for the whole operation."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.sqlast import (
    ParsedStatement,
    object_name,
    option_enabled,
    relation_name,
    table_name,
)

NO_TRANSACTION = "-- migrate-safe:no-transaction"


@statement_rule(
    Rule(
        id="MS101",
        name="create-index-without-concurrently",
        severity=Severity.ERROR,
        family="indexes",
        summary="CREATE INDEX without CONCURRENTLY on an existing table blocks writes while "
        "the index builds",
        safe_alternative="CREATE INDEX CONCURRENTLY IF NOT EXISTS … in its own migration marked "
        f"`{NO_TRANSACTION}`",
        lock="SHARE on the table: every INSERT, UPDATE and DELETE waits for the whole build",
        why="The build reads the whole table; on a large table that is minutes of write outage. "
        "A concurrent build takes SHARE UPDATE EXCLUSIVE, which lets reads and writes continue. "
        "It cannot run in a transaction, and a failed build leaves an INVALID index that must be "
        "dropped before a retry (the harness does that). Indexes on a table created earlier in "
        "the same file are fine: nobody else can see that table yet. Avoid concurrent builds on "
        "PostgreSQL 14.0-14.3 (index corruption bug, fixed in 14.4).",
        unsafe_example="CREATE INDEX orders_created_at_idx ON orders (created_at);",
        safe_example=f"{NO_TRANSACTION}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS "
        "orders_created_at_idx ON orders (created_at);",
        bites=Bites.WITH_ROWS,
    ),
    ast.IndexStmt,
)
def create_index_without_concurrently(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.IndexStmt) or node.concurrent or node.relation is None:
        return
    if not context.is_new_table(node.relation):
        yield Hit(
            f"CREATE INDEX on {table_name(node.relation)} without CONCURRENTLY blocks writes "
            "(SHARE lock) for the whole build",
            subject=relation_name(node.relation),
        )


@statement_rule(
    Rule(
        id="MS102",
        name="drop-index-without-concurrently",
        severity=Severity.WARNING,
        family="indexes",
        summary="DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the index's table",
        safe_alternative=f"DROP INDEX CONCURRENTLY IF EXISTS … in a migration marked "
        f"`{NO_TRANSACTION}`",
        lock="ACCESS EXCLUSIVE on the table: reads and writes wait",
        why="The drop itself is quick, but it must wait for every running transaction on the "
        "table, and every query behind it queues: a long report query turns into an outage. "
        "DROP INDEX CONCURRENTLY waits without blocking others.",
        unsafe_example="DROP INDEX orders_created_at_idx;",
        safe_example=f"{NO_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS orders_created_at_idx;",
        bites=Bites.IF_IN_USE,
    ),
    ast.DropStmt,
)
def drop_index_without_concurrently(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.DropStmt) or node.concurrent:
        return
    if node.removeType == ObjectType.OBJECT_INDEX:
        for names in node.objects or ():
            index = object_name(names)
            yield Hit(
                f"DROP INDEX {index} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table",
                subject=index,
                missing_ok=bool(node.missing_ok),
            )


@statement_rule(
    Rule(
        id="MS103",
        name="reindex-without-concurrently",
        severity=Severity.ERROR,
        family="indexes",
        summary="REINDEX without CONCURRENTLY blocks writes to the table and reads that use "
        "the index",
        safe_alternative=f"REINDEX … CONCURRENTLY (PostgreSQL 12+) in a migration marked "
        f"`{NO_TRANSACTION}`",
        lock="SHARE on the table and ACCESS EXCLUSIVE on each index rebuilt",
        why="Queries that would use the index wait for the rebuild (the planner locks every "
        "index of the table), so in practice the table is unavailable. REINDEX CONCURRENTLY "
        "builds a new index beside the old one and swaps them. A failed run leaves an "
        "`_ccnew` INVALID index to drop.",
        unsafe_example="REINDEX INDEX orders_created_at_idx;",
        safe_example=f"{NO_TRANSACTION}\nREINDEX INDEX CONCURRENTLY orders_created_at_idx;",
        bites=Bites.WITH_ROWS,
    ),
    ast.ReindexStmt,
)
def reindex_without_concurrently(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.ReindexStmt) or option_enabled(node.params, "concurrently"):
        return
    target = table_name(node.relation) if node.relation else str(node.name or "")
    subject = relation_name(node.relation) if node.relation else None
    if context.pg_version >= 12:
        yield Hit(
            f"REINDEX {target} without CONCURRENTLY blocks the table while it rebuilds",
            subject=subject,
        )
    else:
        yield Hit(
            f"REINDEX {target} blocks the table while it rebuilds, and PostgreSQL "
            f"{context.pg_version} has no REINDEX CONCURRENTLY",
            "CREATE INDEX CONCURRENTLY a replacement, DROP INDEX CONCURRENTLY the old one, "
            "then rename the new one",
            subject=subject,
        )
