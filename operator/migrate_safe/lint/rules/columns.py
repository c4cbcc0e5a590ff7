"""Column changes: rewrites, full-table scans, and renames that break running code."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.facts import RelationName
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.sqlast import (
    SERIAL_TYPES,
    ColumnType,
    ParsedStatement,
    added_column,
    added_constraint,
    alter_commands,
    column_constraints,
    column_type,
    is_null_constant,
    not_null_constraint_column,
    relation_name,
    table_key,
    table_name,
    volatile_calls,
)

BACKFILL = (
    "add the column nullable without a default, `ALTER COLUMN … SET DEFAULT …` for new rows, "
    "then backfill existing rows in batches in later migrations"
)


def altered_table(
    statement: ParsedStatement, context: FileContext
) -> tuple[ast.AlterTableStmt, RelationName] | None:
    """The ALTER TABLE statement and its table, when the table existed before this file."""
    altered = statement.altered_table
    if altered is None or context.is_new_table(altered[0].relation):
        return None
    return altered


def _existing_table_columns(
    statement: ParsedStatement, context: FileContext
) -> Iterator[tuple[ast.AlterTableStmt, RelationName, ast.ColumnDef]]:
    """(statement, table, column) for every ADD COLUMN on a table that existed before this
    file."""
    altered = altered_table(statement, context)
    if altered is None:
        return
    node, table = altered
    for command in alter_commands(node, AlterTableType.AT_AddColumn):
        column = added_column(command)
        if column is not None:
            yield node, table, column


def _default_expression(column: ast.ColumnDef) -> ast.Node | None:
    defaults = column_constraints(column, ConstrType.CONSTR_DEFAULT)
    return defaults[0].raw_expr if defaults else None


def _rewrite_reason(column: ast.ColumnDef, pg_version: int) -> str | None:
    """Why adding this column rewrites the table, or None when it is catalog-only."""
    found = column_type(column.typeName)
    if found is not None and found.name in SERIAL_TYPES:
        return f"a {found.name} column fills every row from a sequence (nextval is volatile)"
    if column_constraints(column, ConstrType.CONSTR_IDENTITY):
        return "an identity column fills every existing row"
    for generated in column_constraints(column, ConstrType.CONSTR_GENERATED):
        if generated.generated_kind != "v":  # virtual generated columns (PG18) never rewrite
            return "a stored generated column is computed for every existing row"
    default = _default_expression(column)
    if default is None or is_null_constant(default):
        return None
    volatile, unknown = volatile_calls(default)
    if volatile:
        return f"the default calls volatile {volatile[0]}(), evaluated per row"
    if unknown:
        return (
            f"the default calls {unknown[0]}(), not a known stable built-in; "
            "if it is VOLATILE the table is rewritten"
        )
    if pg_version <= 10:
        return f"any default rewrites the table on PostgreSQL {pg_version} (catalog-only from 11)"
    return None


@statement_rule(
    Rule(
        id="MS201",
        name="add-column-rewrites-table",
        severity=Severity.ERROR,
        family="columns",
        summary="ADD COLUMN with a volatile default, or a stored generated, identity or serial "
        "column rewrites the whole table",
        safe_alternative=BACKFILL,
        lock="ACCESS EXCLUSIVE for the whole rewrite of the table and its indexes",
        why="PostgreSQL 11+ stores a constant or STABLE default (e.g. now()) in the catalog, so "
        "ADD COLUMN is instant. A VOLATILE default (random(), gen_random_uuid(), "
        "clock_timestamp(), nextval()), a stored generated column, an identity or serial column "
        "needs a value per row: the table and its indexes are rewritten under ACCESS EXCLUSIVE, "
        "needing up to twice the disk space. On PostgreSQL 10 and older every non-NULL default "
        "rewrites. A function lint does not know is treated as volatile: suppress the finding "
        "when it is STABLE or IMMUTABLE.",
        unsafe_example="ALTER TABLE orders ADD COLUMN public_id uuid DEFAULT gen_random_uuid();",
        safe_example="ALTER TABLE orders ADD COLUMN public_id uuid;\n"
        "ALTER TABLE orders ALTER COLUMN public_id SET DEFAULT gen_random_uuid();\n"
        "-- later migrations: UPDATE orders SET public_id = gen_random_uuid()\n"
        "--   WHERE id BETWEEN … AND … AND public_id IS NULL;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddColumn,
)
def add_column_rewrites_table(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    for node, table, column in _existing_table_columns(statement, context):
        reason = _rewrite_reason(column, context.pg_version)
        if reason:
            yield Hit(
                f"ADD COLUMN {table}.{column.colname} rewrites the table: {reason}",
                subject=table,
                missing_ok=bool(node.missing_ok),
            )


@statement_rule(
    Rule(
        id="MS202",
        name="add-column-not-null-without-default",
        severity=Severity.ERROR,
        family="columns",
        summary="ADD COLUMN … NOT NULL without a default fails on a table that has rows",
        safe_alternative="add the column nullable (or with a constant default on PostgreSQL "
        "11+), backfill, then add NOT NULL through a NOT VALID CHECK (see MS203)",
        lock="ACCESS EXCLUSIVE",
        why="Existing rows would hold NULL, so the statement fails as soon as the table is not "
        "empty, and application versions still running insert rows without the column and "
        "fail too.",
        unsafe_example="ALTER TABLE orders ADD COLUMN currency text NOT NULL;",
        safe_example="ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR';",
        # The statement itself fails only on a table with rows: an empty one (a rollback in a
        # fresh environment, say) is judged harmless; the message still warns about inserts.
        bites=Bites.IF_NOT_EMPTY,
    ),
    AlterTableType.AT_AddColumn,
)
def add_column_not_null_without_default(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    for node, table, column in _existing_table_columns(statement, context):
        not_null = column.is_not_null or column_constraints(column, ConstrType.CONSTR_NOTNULL)
        fills_rows = column_constraints(
            column, ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY
        ) or column_constraints(column, ConstrType.CONSTR_GENERATED)
        serial = (column_type(column.typeName) or ColumnType("")).name in SERIAL_TYPES
        if not_null and not fills_rows and not serial:
            yield Hit(
                f"ADD COLUMN {table}.{column.colname} NOT NULL without a default fails "
                "when the table has rows, and so do inserts of running code that omit it",
                subject=table,
                missing_ok=bool(node.missing_ok),
            )


@statement_rule(
    Rule(
        id="MS203",
        name="set-not-null-scans-table",
        severity=Severity.ERROR,
        family="columns",
        summary="ALTER COLUMN … SET NOT NULL scans the whole table under ACCESS EXCLUSIVE",
        safe_alternative="ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; in a later "
        "migration VALIDATE CONSTRAINT c; then SET NOT NULL (no scan on PostgreSQL 12+) and "
        "DROP CONSTRAINT c",
        lock="ACCESS EXCLUSIVE for a full scan of the table",
        why="PostgreSQL must prove there is no NULL, reading every row while reads and writes "
        "wait. From PostgreSQL 12 a validated CHECK (col IS NOT NULL) is accepted as proof and "
        "the scan is skipped; VALIDATE CONSTRAINT scans under SHARE UPDATE EXCLUSIVE, which "
        "lets traffic continue. Lint accepts SET NOT NULL when such a validated check appears "
        "in an earlier migration it has seen.",
        unsafe_example="ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;",
        safe_example="ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null\n"
        "    CHECK (currency IS NOT NULL) NOT VALID;\n"
        "-- next migration:\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_not_null;\n"
        "-- next migration:\n"
        "ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;\n"
        "ALTER TABLE orders DROP CONSTRAINT orders_currency_not_null;",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_SetNotNull,
)
def set_not_null_scans_table(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    altered = altered_table(statement, context)
    if altered is None:
        return
    node, table = altered
    yield from _not_null_constraint_scans(node, table, context)
    for command in alter_commands(node, AlterTableType.AT_SetNotNull):
        column = str(command.name)
        proven = context.schema.proves_not_null(table_key(node.relation), column)
        if proven and context.pg_version >= 12:
            continue
        message = f"SET NOT NULL on {table}.{column} scans the whole table"
        if context.pg_version >= 18:
            yield Hit(
                message + " under ACCESS EXCLUSIVE",
                NOT_VALID_NOT_NULL,
                subject=table,
                missing_ok=bool(node.missing_ok),
            )
        elif context.pg_version < 12:
            yield Hit(
                message + f" (PostgreSQL {context.pg_version} cannot use a CHECK to skip it)",
                "keep a validated CHECK (col IS NOT NULL) instead of SET NOT NULL until the "
                "server runs PostgreSQL 12+",
                subject=table,
                missing_ok=bool(node.missing_ok),
            )
        else:
            yield Hit(
                message + " under ACCESS EXCLUSIVE", subject=table, missing_ok=bool(node.missing_ok)
            )


# PostgreSQL 18's own way: the NOT NULL constraint is NOT VALID, then validated, with no CHECK.
NOT_VALID_NOT_NULL = (
    "ADD CONSTRAINT c NOT NULL col NOT VALID; in a later migration VALIDATE CONSTRAINT c "
    "(PostgreSQL 18+: it scans under SHARE UPDATE EXCLUSIVE, and the column is then NOT NULL)"
)


def _not_null_constraint_scans(
    node: ast.AlterTableStmt, table: RelationName, context: FileContext
) -> Iterator[Hit]:
    """`ADD CONSTRAINT c NOT NULL col` (18+) proves it the way SET NOT NULL does."""
    for command in alter_commands(node, AlterTableType.AT_AddConstraint):
        constraint = added_constraint(command)
        column = not_null_constraint_column(constraint) if constraint else None
        if not column or (constraint and constraint.skip_validation):
            continue
        if context.schema.proves_not_null(table_key(node.relation), column):
            continue
        yield Hit(
            f"ADD CONSTRAINT … NOT NULL on {table}.{column} scans the whole table under "
            "ACCESS EXCLUSIVE",
            NOT_VALID_NOT_NULL,
            subject=table,
            missing_ok=bool(node.missing_ok),
        )


# --- type changes ------------------------------------------------------------------------

_LENGTH_LIMITED = frozenset({"varchar", "varbit"})
_PRECISION_LIMITED = frozenset({"timestamp", "timestamptz", "time", "timetz", "interval"})
# Types that some other type is binary-coercible to: a change *to* one of them may be free.
_COERCIBLE_TARGETS = _LENGTH_LIMITED | _PRECISION_LIMITED | {"text", "numeric", "inet"}


def _widens(old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """No limit, or a limit at least as large as before."""
    return not new or (bool(old) and new[0] >= old[0])


def rewrite_free(old: ColumnType, new: ColumnType) -> bool:
    """Whether PostgreSQL changes old → new without rewriting (binary-coercible, no check)."""
    if old.array != new.array:
        return False
    if old == new or (old.name, new.name) in {("varchar", "text"), ("cidr", "inet")}:
        return True
    if (old.name, new) == ("text", ColumnType("varchar", (), old.array)):
        return True
    if old.name != new.name:
        return False
    if old.name in _LENGTH_LIMITED | _PRECISION_LIMITED:
        return _widens(old.modifiers, new.modifiers)
    if old.name == "numeric":
        old_scale = old.modifiers[1] if len(old.modifiers) > 1 else 0
        new_scale = new.modifiers[1] if len(new.modifiers) > 1 else 0
        return _widens(old.modifiers, new.modifiers) and (
            not new.modifiers or old_scale == new_scale
        )
    return False


def _type_change_problem(
    old: ColumnType | None, new: ColumnType, has_using: bool, where: str
) -> str | None:
    if has_using:
        return f"{where} to {new} with USING rewrites the table and its indexes"
    if old is None:
        if new.name not in _COERCIBLE_TARGETS:
            return f"{where} to {new} rewrites the table and its indexes"
        return (
            f"{where} to {new} rewrites the table unless the current type is binary-coercible "
            "(e.g. varchar(n) → text); lint has not seen the current type"
        )
    if rewrite_free(old, new):
        return None
    return f"{where} from {old} to {new} rewrites the table and its indexes"


@statement_rule(
    Rule(
        id="MS204",
        name="alter-column-type-rewrites-table",
        severity=Severity.ERROR,
        family="columns",
        summary="ALTER COLUMN … TYPE rewrites the table and its indexes unless the change is "
        "binary-coercible",
        safe_alternative="expand/contract: add a column of the new type, keep both in sync with "
        "a trigger, backfill in batches, switch readers, drop the old column later",
        lock="ACCESS EXCLUSIVE for the whole rewrite",
        why="Changing int to bigint, text to int, or shrinking a length rewrites every row and "
        "rebuilds every index while reads and writes wait, and needs up to twice the disk. "
        "Rewrite-free (lint accepts them when it has seen the column's current type in an "
        "earlier migration): varchar(n) → text, varchar(n) → varchar(m ≥ n) or unlimited "
        "varchar, text → varchar, numeric(p,s) → numeric(p2 ≥ p, s), cidr → inet, and higher "
        "timestamp/time/interval precision. timestamp → timestamptz is rewrite-free only when "
        "the session TimeZone is UTC, so lint flags it.",
        unsafe_example="ALTER TABLE orders ALTER COLUMN total_cents TYPE bigint;",
        safe_example="ALTER TABLE orders ADD COLUMN total_cents_big bigint;\n"
        "-- sync trigger + batched backfill, then switch readers and drop the old column",
        bites=Bites.WITH_ROWS,
    ),
    AlterTableType.AT_AlterColumnType,
)
def alter_column_type_rewrites_table(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    altered = altered_table(statement, context)
    if altered is None:
        return
    node, subject = altered
    table = table_key(node.relation)
    for command in alter_commands(node, AlterTableType.AT_AlterColumnType):
        column = added_column(command)
        new = column_type(column.typeName) if column else None
        if column is None or new is None:
            continue
        old = context.schema.column_types.get((table, str(command.name)))
        where = f"ALTER COLUMN {table_name(node.relation)}.{command.name} TYPE"
        problem = _type_change_problem(old, new, column.raw_default is not None, where)
        if problem:
            yield Hit(problem, subject=subject, missing_ok=bool(node.missing_ok))


# --- renames -----------------------------------------------------------------------------


@statement_rule(
    Rule(
        id="MS205",
        name="rename-column",
        severity=Severity.ERROR,
        family="columns",
        summary="RENAME COLUMN breaks every running application version that uses the old name",
        safe_alternative="expand/contract: add the new column, sync both with a trigger, "
        "backfill, move the code over, drop the old column in a later release",
        lock="ACCESS EXCLUSIVE (brief, catalog-only)",
        why="The rename is instant, but queries of the application versions still running fail "
        "with `column does not exist` from that moment until every instance is redeployed.",
        unsafe_example="ALTER TABLE orders RENAME COLUMN status TO state;",
        safe_example="ALTER TABLE orders ADD COLUMN state text;\n"
        "-- trigger keeping status and state in sync, then a batched backfill",
        bites=Bites.IF_IN_USE,
    ),
    ast.RenameStmt,
)
def rename_column(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.RenameStmt) or node.relation is None:
        return
    if node.renameType == ObjectType.OBJECT_COLUMN and not context.is_new_table(node.relation):
        yield Hit(
            f"RENAME COLUMN {table_name(node.relation)}.{node.subname} to {node.newname} "
            "breaks running code that uses the old name",
            subject=relation_name(node.relation),
            missing_ok=bool(node.missing_ok),
        )


@statement_rule(
    Rule(
        id="MS206",
        name="rename-table",
        severity=Severity.ERROR,
        family="columns",
        summary="RENAME TABLE breaks every running application version that uses the old name",
        safe_alternative="rename, then create a view with the old name in the same transaction "
        "(simple views are updatable); drop the view once no code uses it",
        lock="ACCESS EXCLUSIVE (brief, catalog-only)",
        why="Queries from application versions still running fail with `relation does not "
        "exist` until every instance is redeployed.",
        unsafe_example="ALTER TABLE orders RENAME TO purchases;",
        safe_example="-- migrate-safe:allow=MS206\n"
        "ALTER TABLE orders RENAME TO purchases;\n"
        "CREATE VIEW orders AS SELECT * FROM purchases;",
        bites=Bites.IF_IN_USE,
    ),
    ast.RenameStmt,
)
def rename_table(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.RenameStmt) or node.relation is None:
        return
    if node.renameType == ObjectType.OBJECT_TABLE and not context.is_new_table(node.relation):
        yield Hit(
            f"RENAME TABLE {table_name(node.relation)} to {node.newname} breaks running "
            "code that uses the old name",
            subject=relation_name(node.relation),
            missing_ok=bool(node.missing_ok),
        )


@statement_rule(
    Rule(
        id="MS207",
        name="drop-not-null",
        severity=Severity.WARNING,
        family="columns",
        summary="DROP NOT NULL lets NULLs in that running code may not handle",
        safe_alternative="keep NOT NULL and write a sentinel value, or make sure every reader "
        "handles NULL before dropping the constraint",
        lock="ACCESS EXCLUSIVE (brief)",
        why="Code, reports and PL/pgSQL written against a NOT NULL column often assume a value; "
        "the first NULL breaks them. In a down migration this is the normal undo of SET NOT "
        "NULL, so lint checks up migrations only.",
        unsafe_example="ALTER TABLE orders ALTER COLUMN currency DROP NOT NULL;",
        safe_example="ALTER TABLE orders ALTER COLUMN currency SET DEFAULT 'EUR';",
        bites=Bites.IF_IN_USE,
    ),
    AlterTableType.AT_DropNotNull,
)
def drop_not_null(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    altered = altered_table(statement, context)
    if context.direction != "up" or altered is None:
        return
    node, table = altered
    for command in alter_commands(node, AlterTableType.AT_DropNotNull):
        yield Hit(
            f"DROP NOT NULL on {table}.{command.name}",
            subject=table,
            missing_ok=bool(node.missing_ok),
        )
