"""Statements that destroy data. In an up migration they are errors; in a down migration they
are the expected undo, reported as info so reviewers see what a rollback throws away."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, DropBehavior, ObjectType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.facts import RelationName
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.rules.columns import altered_table
from migrate_safe.lint.sqlast import ParsedStatement, alter_commands, object_name, relation_name


def dropped_tables(statement: ParsedStatement, context: FileContext) -> list[RelationName]:
    """Tables a DROP TABLE removes, except those created earlier in the same file."""
    node = statement.node
    if not isinstance(node, ast.DropStmt) or node.removeType != ObjectType.OBJECT_TABLE:
        return []
    names = [object_name(names) for names in node.objects or ()]
    return [name for name in names if name.name not in context.created_tables]


def dropped_columns(
    statement: ParsedStatement, context: FileContext
) -> list[tuple[RelationName, str]]:
    altered = altered_table(statement, context)
    if altered is None:
        return []
    node, table = altered
    return [(table, str(c.name)) for c in alter_commands(node, AlterTableType.AT_DropColumn)]


def if_exists(statement: ParsedStatement) -> bool:
    """DROP … IF EXISTS / ALTER TABLE IF EXISTS: a missing object makes it a no-op."""
    node = statement.node
    return isinstance(node, ast.DropStmt | ast.AlterTableStmt) and bool(node.missing_ok)


def dropped_containers(statement: ParsedStatement) -> list[str]:
    """Schemas and databases: everything inside them goes."""
    node = statement.node
    if isinstance(node, ast.DropdbStmt):
        return [f"database {node.dbname}"]
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_SCHEMA:
        return [f"schema {getattr(name, 'sval', name)}" for name in node.objects or ()]
    return []


def truncated_tables(statement: ParsedStatement) -> list[RelationName]:
    node = statement.node
    if not isinstance(node, ast.TruncateStmt):
        return []
    return [relation_name(r) for r in node.relations or () if isinstance(r, ast.RangeVar)]


def _cascade(statement: ParsedStatement) -> str:
    node = statement.node
    cascades = isinstance(node, ast.TruncateStmt) and node.behavior == DropBehavior.DROP_CASCADE
    return " (CASCADE: and every table referencing it)" if cascades else ""


@statement_rule(
    Rule(
        id="MS401",
        name="drop-table",
        severity=Severity.ERROR,
        family="destructive",
        summary="DROP TABLE loses the table's data and breaks code that still uses it",
        safe_alternative="stop all use of the table first (deploy code without it), back it "
        "up, then drop it in a later release; optionally guard with a check that it is empty",
        lock="ACCESS EXCLUSIVE",
        why="The data is gone for good (a down migration cannot bring rows back) and running "
        "application versions that still query the table fail.",
        unsafe_example="DROP TABLE legacy_invoices;",
        safe_example="-- migrate-safe:allow=MS401\n"
        "-- legacy_invoices unused since release 42; backup in s3://backups/legacy_invoices\n"
        "DROP TABLE legacy_invoices;",
        bites=Bites.IF_IN_USE,
    ),
    ast.DropStmt,
)
def drop_table(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    if context.direction == "up":
        for table in dropped_tables(statement, context):
            yield Hit(
                f"DROP TABLE {table} deletes its data",
                subject=table,
                missing_ok=if_exists(statement),
            )


@statement_rule(
    Rule(
        id="MS402",
        name="drop-column",
        severity=Severity.ERROR,
        family="destructive",
        summary="DROP COLUMN loses the column's data and breaks code that still reads it",
        safe_alternative="deploy code that no longer reads or writes the column (ORM: ignore "
        "it) first, then drop it in a later release",
        lock="ACCESS EXCLUSIVE (brief; space is reclaimed only by later rewrites)",
        why="Application versions still running select or insert the column and fail; ORMs "
        "that cache the column list fail even on `SELECT *`-style queries. The data is gone.",
        unsafe_example="ALTER TABLE orders DROP COLUMN status;",
        safe_example="-- migrate-safe:allow=MS402\n"
        "-- status unused since release 42 (expand/contract step 3)\n"
        "ALTER TABLE orders DROP COLUMN status;",
        bites=Bites.IF_IN_USE,
    ),
    AlterTableType.AT_DropColumn,
)
def drop_column(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    if context.direction == "up":
        for table, column in dropped_columns(statement, context):
            yield Hit(
                f"DROP COLUMN {table}.{column} deletes its data and breaks code still using it",
                subject=table,
                missing_ok=if_exists(statement),
            )


@statement_rule(
    Rule(
        id="MS403",
        name="drop-schema-or-database",
        severity=Severity.ERROR,
        family="destructive",
        summary="DROP SCHEMA / DROP DATABASE deletes everything inside",
        safe_alternative="drop the objects one by one after their use has stopped, with "
        "backups; never drop a database from a migration",
        lock="ACCESS EXCLUSIVE on every object inside",
        why="Every table in the schema (with CASCADE, everything depending on it) is gone in "
        "one statement.",
        unsafe_example="DROP SCHEMA reporting CASCADE;",
        safe_example="-- migrate-safe:allow=MS403\n"
        "-- reporting was moved to the warehouse in release 40; backed up\n"
        "DROP SCHEMA reporting;",
    ),
    ast.DropStmt,
    ast.DropdbStmt,
)
def drop_schema_or_database(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    if context.direction == "up":
        for container in dropped_containers(statement):
            yield Hit(f"DROP {container} deletes everything in it")


@statement_rule(
    Rule(
        id="MS404",
        name="truncate",
        severity=Severity.ERROR,
        family="destructive",
        summary="TRUNCATE deletes every row (with CASCADE, of referencing tables too)",
        safe_alternative="DELETE in batches with a WHERE clause, or truncate only tables you "
        "name explicitly, without CASCADE",
        lock="ACCESS EXCLUSIVE on every truncated table",
        why="All rows are gone at once; CASCADE silently extends that to every table with a "
        "foreign key to it, transitively.",
        unsafe_example="TRUNCATE sessions CASCADE;",
        safe_example="DELETE FROM sessions WHERE expires_at < now() - interval '30 days';",
        bites=Bites.IF_NOT_EMPTY,
    ),
    ast.TruncateStmt,
)
def truncate(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    if context.direction == "up":
        cascade = _cascade(statement)
        for table in truncated_tables(statement):
            # CASCADE empties tables it does not name: the named one's size says nothing.
            subject = None if cascade else table
            yield Hit(f"TRUNCATE {table}{cascade} deletes every row", subject=subject)


@statement_rule(
    Rule(
        id="MS405",
        name="destructive-down-migration",
        severity=Severity.INFO,
        family="destructive",
        summary="This down migration destroys data: rolling back loses what was written since "
        "the up migration ran",
        safe_alternative="accept it knowingly (a rollback of a new table or column normally "
        "drops it), or make the down migration keep the data (rename aside instead of drop)",
        lock="ACCESS EXCLUSIVE",
        why="A down migration usually drops what its up migration created. That is intended, "
        "but rows written to it in the meantime are lost on rollback, so lint names them. It "
        "is info, not a failure.",
        unsafe_example="-- 004_add_customers_display_name.down.sql\n"
        "ALTER TABLE customers DROP COLUMN display_name;",
        safe_example="-- 004_add_customers_display_name.down.sql\n"
        "ALTER TABLE customers RENAME COLUMN display_name TO display_name_rolled_back;",
    ),
    ast.DropStmt,
    AlterTableType.AT_DropColumn,
    ast.DropdbStmt,
    ast.TruncateStmt,
)
def destructive_down_migration(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    if context.direction != "down":
        return
    losses = [
        *(f"table {t}" for t in dropped_tables(statement, context)),
        *(f"column {t}.{c}" for t, c in dropped_columns(statement, context)),
        *dropped_containers(statement),
        *(f"all rows of {t}{_cascade(statement)}" for t in truncated_tables(statement)),
    ]
    for loss in losses:
        yield Hit(f"down migration destroys data: rolling back deletes {loss}")
