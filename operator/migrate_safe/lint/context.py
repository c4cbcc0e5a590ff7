"""What lint knows while it walks migrations: options, the file at hand, the schema so far.

Rules read this state; `observe` updates it after every statement, so a rule sees exactly what
ran before its statement (a table created two lines up is new; one created last release is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind

from migrate_safe.lint.sqlast import (
    ColumnType,
    ParsedStatement,
    added_column,
    added_constraint,
    alter_commands,
    column_type,
    not_null_check_column,
    table_key,
)
from migrate_safe.source import Directives

DEFAULT_PG_VERSION = 15


@dataclass(frozen=True)
class LintOptions:
    """pg_version: the target server's major version. harness_timeouts: False when the files
    may be run by another tool, so the harness's own lock_timeout cannot be relied on."""

    pg_version: int = DEFAULT_PG_VERSION
    harness_timeouts: bool = True


@dataclass(frozen=True)
class NotNullCheck:
    column: str
    validated: bool


@dataclass
class SchemaState:
    """Facts learnt from every migration linted (or given as history) so far, across files."""

    column_types: dict[tuple[str, str], ColumnType] = field(default_factory=dict)
    not_null_checks: dict[tuple[str, str], NotNullCheck] = field(default_factory=dict)

    def fork(self) -> SchemaState:
        """A copy a down file may change without touching the up direction's state. The
        values are frozen, so copying the two dicts is enough (a deep copy per down file made
        linting n migrations quadratic)."""
        return SchemaState(dict(self.column_types), dict(self.not_null_checks))

    def proves_not_null(self, table: str, column: str) -> bool:
        """A validated CHECK (column IS NOT NULL) exists: SET NOT NULL skips its scan (PG12+)."""
        return any(
            key[0] == table and check.column == column and check.validated
            for key, check in self.not_null_checks.items()
        )


@dataclass
class FileContext:
    path: str
    direction: str  # "up" or "down"
    directives: Directives
    options: LintOptions
    schema: SchemaState
    created_tables: set[str] = field(default_factory=set)
    not_valid_constraints: set[tuple[str, str]] = field(default_factory=set)
    in_transaction_block: bool = False
    lock_timeout_set: bool = False

    @property
    def transactional(self) -> bool:
        """The harness wraps the whole file in one transaction unless told otherwise."""
        return not self.directives.no_transaction

    @property
    def in_transaction(self) -> bool:
        return self.transactional or self.in_transaction_block

    @property
    def pg_version(self) -> int:
        return self.options.pg_version

    def is_new_table(self, relation: ast.RangeVar | None) -> bool:
        """Created earlier in this file: nobody else can be using it, so no lock matters."""
        return table_key(relation) in self.created_tables


def observe(statement: ParsedStatement, context: FileContext) -> None:
    """Record what `statement` changes, for the rules that look at later statements."""
    node = statement.node
    if isinstance(node, ast.CreateStmt):
        _observe_create_table(node, context)
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        context.created_tables.add(table_key(node.into.rel))
    elif isinstance(node, ast.AlterTableStmt):
        _observe_alter_table(node, context)
    elif isinstance(node, ast.TransactionStmt):
        _observe_transaction(node, context)
    elif isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
        context.lock_timeout_set = True
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            context.created_tables.discard(str(getattr(names[-1], "sval", "")))


def _observe_create_table(node: ast.CreateStmt, context: FileContext) -> None:
    table = table_key(node.relation)
    context.created_tables.add(table)
    for element in node.tableElts or ():
        if isinstance(element, ast.ColumnDef) and element.colname:
            _record_column(context, table, element)
        elif isinstance(element, ast.Constraint):
            _record_constraint(context, table, element)


def _observe_alter_table(node: ast.AlterTableStmt, context: FileContext) -> None:
    table = table_key(node.relation)
    for command in alter_commands(node, AlterTableType.AT_AddColumn):
        column = added_column(command)
        if column is not None and column.colname:
            _record_column(context, table, column)
    for command in alter_commands(node, AlterTableType.AT_AlterColumnType):
        column = added_column(command)
        new_type = column_type(column.typeName) if column else None
        if command.name and new_type:
            context.schema.column_types[(table, command.name)] = new_type
    for command in alter_commands(node, AlterTableType.AT_AddConstraint):
        constraint = added_constraint(command)
        if constraint is not None:
            _record_constraint(context, table, constraint)
    for command in alter_commands(node, AlterTableType.AT_ValidateConstraint):
        _record_validation(context, table, str(command.name))
    for command in alter_commands(node, AlterTableType.AT_DropConstraint):
        context.schema.not_null_checks.pop((table, str(command.name)), None)


def _record_column(context: FileContext, table: str, column: ast.ColumnDef) -> None:
    found = column_type(column.typeName)
    if found is not None:
        context.schema.column_types[(table, str(column.colname))] = found


def _record_constraint(context: FileContext, table: str, constraint: ast.Constraint) -> None:
    name = str(constraint.conname or "")
    if constraint.skip_validation:
        context.not_valid_constraints.add((table, name))
    checked_column = not_null_check_column(constraint.raw_expr)
    if constraint.contype == ConstrType.CONSTR_CHECK and checked_column and name:
        validated = not constraint.skip_validation
        context.schema.not_null_checks[(table, name)] = NotNullCheck(checked_column, validated)


def _record_validation(context: FileContext, table: str, name: str) -> None:
    check = context.schema.not_null_checks.get((table, name))
    if check is not None:
        context.schema.not_null_checks[(table, name)] = NotNullCheck(check.column, True)


def _observe_transaction(node: ast.TransactionStmt, context: FileContext) -> None:
    opening = {TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START}
    closing = {
        TransactionStmtKind.TRANS_STMT_COMMIT,
        TransactionStmtKind.TRANS_STMT_ROLLBACK,
        TransactionStmtKind.TRANS_STMT_PREPARE,
    }
    if node.kind in opening:
        context.in_transaction_block = True
    elif node.kind in closing:
        context.in_transaction_block = False
