"""Constraints: validation scans and index builds that hold strong locks, and their safe forms."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.facts import RelationName
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.rules.columns import altered_table
from migrate_safe.lint.sqlast import (
    ParsedStatement,
    alter_commands,
    relation_name,
    table_key,
    table_name,
)


def _new_constraints(
    statement: ParsedStatement, context: FileContext, kind: ConstrType
) -> Iterator[tuple[RelationName, ast.Constraint, str | None]]:
    """(table, constraint, column if inline in ADD COLUMN) added to a table that existed."""
    altered = altered_table(statement, context)
    if altered is None:
        return
    _, table = altered
    for constraint, column in statement.added_constraints:
        if constraint.contype == kind:
            yield table, constraint, column


def _if_exists(statement: ParsedStatement) -> bool:
    """ALTER TABLE IF EXISTS: a missing table makes the statement a no-op."""
    return isinstance(statement.node, ast.AlterTableStmt) and bool(statement.node.missing_ok)


def _label(constraint: ast.Constraint, inline_column: str | None, what: str) -> str:
    if inline_column is not None:
        return f"inline {what} on new column {inline_column}"
    return f"{what} {constraint.conname}" if constraint.conname else what


@statement_rule(
    Rule(
        id="MS301",
        name="add-check-without-not-valid",
        severity=Severity.ERROR,
        family="constraints",
        summary="ADD CONSTRAINT … CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE",
        safe_alternative="ADD CONSTRAINT … CHECK (…) NOT VALID, then VALIDATE CONSTRAINT in a "
        "later migration (it takes only SHARE UPDATE EXCLUSIVE)",
        lock="ACCESS EXCLUSIVE while every row is checked",
        why="Reads and writes wait while PostgreSQL checks every existing row. With NOT VALID "
        "only new rows are checked and the lock is brief; VALIDATE CONSTRAINT later checks the "
        "old rows while traffic continues. An inline CHECK on ADD COLUMN has no NOT VALID form: "
        "add the column first, then the constraint.",
        unsafe_example="ALTER TABLE orders ADD CONSTRAINT orders_total_positive "
        "CHECK (total_cents >= 0);",
        safe_example="ALTER TABLE orders ADD CONSTRAINT orders_total_positive "
        "CHECK (total_cents >= 0) NOT VALID;\n"
        "-- next migration:\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AddColumn,
)
def add_check_without_not_valid(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    for table, constraint, column in _new_constraints(statement, context, ConstrType.CONSTR_CHECK):
        if not constraint.skip_validation:
            label = _label(constraint, column, "CHECK")
            yield Hit(
                f"{label} on {table} scans every row under ACCESS EXCLUSIVE",
                subject=table,
                missing_ok=_if_exists(statement),
            )


@statement_rule(
    Rule(
        id="MS302",
        name="add-foreign-key-without-not-valid",
        severity=Severity.ERROR,
        family="constraints",
        summary="ADD FOREIGN KEY without NOT VALID blocks writes to both tables while it checks "
        "every row",
        safe_alternative="ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in "
        "a later migration; index the referencing column",
        lock="SHARE ROW EXCLUSIVE on the table and on the referenced table during the check",
        why="Writes to both tables wait while every existing row is looked up in the referenced "
        "table. NOT VALID makes the change brief; VALIDATE CONSTRAINT later takes SHARE UPDATE "
        "EXCLUSIVE on the table and ROW SHARE on the referenced one.",
        unsafe_example="ALTER TABLE orders ADD CONSTRAINT orders_coupon_id_fkey\n"
        "    FOREIGN KEY (coupon_id) REFERENCES coupons (id);",
        safe_example="ALTER TABLE orders ADD CONSTRAINT orders_coupon_id_fkey\n"
        "    FOREIGN KEY (coupon_id) REFERENCES coupons (id) NOT VALID;\n"
        "-- next migration:\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_coupon_id_fkey;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AddColumn,
)
def add_foreign_key_without_not_valid(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    for table, constraint, column in _new_constraints(
        statement, context, ConstrType.CONSTR_FOREIGN
    ):
        if not constraint.skip_validation:
            referenced = table_name(constraint.pktable)
            label = _label(constraint, column, "FOREIGN KEY")
            yield Hit(
                f"{label} on {table} blocks writes to {table} and {referenced} while it scans",
                subject=table,
                missing_ok=_if_exists(statement),
            )


def _index_backed(
    statement: ParsedStatement, context: FileContext, kind: ConstrType, what: str
) -> Iterator[Hit]:
    for table, constraint, column in _new_constraints(statement, context, kind):
        if not constraint.indexname:
            label = _label(constraint, column, what)
            yield Hit(
                f"{label} on {table} builds its index under ACCESS EXCLUSIVE",
                subject=table,
                missing_ok=_if_exists(statement),
            )


@statement_rule(
    Rule(
        id="MS303",
        name="add-unique-without-index",
        severity=Severity.ERROR,
        family="constraints",
        summary="ADD UNIQUE builds its index under ACCESS EXCLUSIVE",
        safe_alternative="CREATE UNIQUE INDEX CONCURRENTLY (no-transaction migration), check it "
        "is valid, then ADD CONSTRAINT … UNIQUE USING INDEX",
        lock="ACCESS EXCLUSIVE for the whole index build",
        why="Reads and writes wait for the build, and it fails on duplicates after doing all "
        "the work. A concurrent unique index is built while traffic continues; attaching it "
        "with USING INDEX is instant.",
        unsafe_example="ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);",
        safe_example="-- migrate-safe:no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS customers_email_key "
        "ON customers (email);\n"
        "-- next migration:\n"
        "ALTER TABLE customers ADD CONSTRAINT customers_email_key "
        "UNIQUE USING INDEX customers_email_key;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AddColumn,
)
def add_unique_without_index(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    yield from _index_backed(statement, context, ConstrType.CONSTR_UNIQUE, "UNIQUE")


@statement_rule(
    Rule(
        id="MS304",
        name="add-primary-key-without-index",
        severity=Severity.ERROR,
        family="constraints",
        summary="ADD PRIMARY KEY builds its index (and checks NOT NULL) under ACCESS EXCLUSIVE",
        safe_alternative="CREATE UNIQUE INDEX CONCURRENTLY (no-transaction migration), prove "
        "the columns NOT NULL (see MS203), then ADD CONSTRAINT … PRIMARY KEY USING INDEX",
        lock="ACCESS EXCLUSIVE for the index build and the NOT NULL scan",
        why="Reads and writes wait for the index build, plus a full scan for every nullable "
        "key column. Building the index concurrently first makes the final step instant.",
        unsafe_example="ALTER TABLE events ADD PRIMARY KEY (id);",
        safe_example="-- migrate-safe:no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_pkey ON events (id);\n"
        "-- next migration:\n"
        "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_pkey;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AddColumn,
)
def add_primary_key_without_index(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    yield from _index_backed(statement, context, ConstrType.CONSTR_PRIMARY, "PRIMARY KEY")


@statement_rule(
    Rule(
        id="MS305",
        name="add-exclusion-constraint",
        severity=Severity.ERROR,
        family="constraints",
        summary="ADD EXCLUDE builds its index under ACCESS EXCLUSIVE and has no online form",
        safe_alternative="no online path: schedule a maintenance window (and suppress this "
        "finding), or build a new table with the constraint and move the data",
        lock="ACCESS EXCLUSIVE for the whole index build",
        why="Exclusion constraints can be neither NOT VALID nor attached from a concurrently "
        "built index, so the table is unavailable for the whole build.",
        unsafe_example="ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap\n"
        "    EXCLUDE USING gist (room WITH =, during WITH &&);",
        safe_example="-- migrate-safe:allow=MS305\n"
        "-- run in the announced maintenance window\n"
        "ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap\n"
        "    EXCLUDE USING gist (room WITH =, during WITH &&);",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AddColumn,
)
def add_exclusion_constraint(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    for table, constraint, _ in _new_constraints(statement, context, ConstrType.CONSTR_EXCLUSION):
        label = _label(constraint, None, "EXCLUDE")
        yield Hit(
            f"{label} on {table} builds its index under ACCESS EXCLUSIVE",
            subject=table,
            missing_ok=_if_exists(statement),
        )


@statement_rule(
    Rule(
        id="MS306",
        name="validate-in-same-transaction",
        severity=Severity.WARNING,
        family="constraints",
        summary="VALIDATE CONSTRAINT in the same transaction as its NOT VALID ADD keeps the "
        "strong lock during the scan",
        safe_alternative="move VALIDATE CONSTRAINT to the next migration",
        lock="the ADD's ACCESS EXCLUSIVE (CHECK) or SHARE ROW EXCLUSIVE (FOREIGN KEY), held "
        "until commit, so the whole validation scan runs under it",
        why="NOT VALID only helps when the validation runs in its own transaction: locks are "
        "kept until commit, so validating right after the ADD scans the table while the ADD's "
        "lock still blocks traffic.",
        unsafe_example="ALTER TABLE orders ADD CONSTRAINT orders_total_positive "
        "CHECK (total_cents >= 0) NOT VALID;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;",
        safe_example="ALTER TABLE orders ADD CONSTRAINT orders_total_positive "
        "CHECK (total_cents >= 0) NOT VALID;\n"
        "-- VALIDATE CONSTRAINT goes in the next migration",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_ValidateConstraint,
)
def validate_in_same_transaction(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.AlterTableStmt) or not context.in_transaction:
        return
    if node.relation is None:
        return
    for command in alter_commands(node, AlterTableType.AT_ValidateConstraint):
        if (table_key(node.relation), str(command.name)) in context.not_valid_constraints:
            yield Hit(
                f"VALIDATE CONSTRAINT {command.name} runs in the transaction that added it, "
                "so the scan happens under the ADD's lock",
                subject=relation_name(node.relation),
            )
