"""What lint knows while it walks migrations: options, the file at hand, the schema so far.

Rules read this state; `observe` updates it after every statement, so a rule sees exactly what
ran before its statement (a table created two lines up is new; one created last release is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind

from migrate_safe.lint.facts import RelationName, TableFacts
from migrate_safe.lint.sqlast import (
    RELATION_DROPS,
    ColumnType,
    ParsedStatement,
    added_column,
    added_constraint,
    alter_commands,
    column_type,
    not_null_check_column,
    not_null_constraint_column,
    object_name,
    relation_name,
    table_key,
)
from migrate_safe.scanner import Directives

DEFAULT_PG_VERSION = 15


@dataclass(frozen=True)
class LintOptions:
    """pg_version: the target server's major version. harness_timeouts: False when the files
    may be run by another tool, so the harness's own lock_timeout cannot be relied on.
    tables: the catalog facts of the target database before the run, when lint runs against
    one (None: no database, so findings say under which condition they bite)."""

    pg_version: int = DEFAULT_PG_VERSION
    harness_timeouts: bool = True
    tables: TableFacts | None = None


@dataclass(frozen=True)
class Creation:
    """A relation created by a file lint walked in this run: new, so empty and unused."""

    kind: str
    origin: str


@dataclass(frozen=True)
class NotNullCheck:
    column: str
    validated: bool


@dataclass
class SchemaState:
    """Facts learnt from every migration linted (or given as history) so far, across files."""

    column_types: dict[tuple[str, str], ColumnType] = field(default_factory=dict)
    not_null_checks: dict[tuple[str, str], NotNullCheck] = field(default_factory=dict)
    # By bare name, like FileContext.created_tables: what the files of this run create.
    created_in_run: dict[str, Creation] = field(default_factory=dict)

    def fork(self) -> SchemaState:
        """A copy a down file may change without touching the up direction's state. The
        values are frozen, so copying the dicts is enough (a deep copy per down file made
        linting n migrations quadratic)."""
        return SchemaState(
            dict(self.column_types), dict(self.not_null_checks), dict(self.created_in_run)
        )

    def for_down(self) -> SchemaState:
        """The state a down file sees: what its up file left, but nothing is new any more
        (a rollback runs on tables the application has been using)."""
        forked = self.fork()
        forked.begin_run()
        return forked

    def begin_run(self) -> None:
        """What the applied history created exists already: only later files make new tables."""
        self.created_in_run.clear()

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

    @property
    def tables(self) -> TableFacts | None:
        return self.options.tables

    def is_new_table(self, relation: ast.RangeVar | None) -> bool:
        """Created earlier in this file: nobody else can be using it, so no lock matters."""
        return table_key(relation) in self.created_tables

    def creation(self, name: RelationName) -> Creation | None:
        """The earlier file of this run (or this file) that creates `name`, if any."""
        return self.schema.created_in_run.get(name.name)

    def creates(self, name: RelationName, if_not_exists: bool | None) -> bool:
        """Whether a CREATE makes a new relation: with IF NOT EXISTS, not when the catalog
        says it is there already (a directory adopted on an existing database)."""
        if not if_not_exists or self.tables is None:
            return True
        return self.tables.exists(name) is False

    def record_creation(self, name: str, kind: str) -> None:
        self.schema.created_in_run[name] = Creation(kind, self.path)


def observe(statement: ParsedStatement, context: FileContext) -> None:
    """Record what `statement` changes, for the rules that look at later statements."""
    node = statement.node
    if isinstance(node, ast.CreateStmt):
        _observe_create_table(node, context)
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        _observe_create_table_as(node, context)
    elif isinstance(node, ast.IndexStmt) and node.idxname and node.relation is not None:
        # An index lives in its table's schema.
        index = RelationName(node.relation.schemaname or None, str(node.idxname))
        if context.creates(index, node.if_not_exists):
            context.record_creation(index.name, "index")
    elif isinstance(node, ast.AlterTableStmt):
        _observe_alter_table(node, context)
    elif isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_TABLE:
        _observe_rename_table(node, context)
    elif isinstance(node, ast.TransactionStmt):
        _observe_transaction(node, context)
    elif isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
        context.lock_timeout_set = True
    elif isinstance(node, ast.DropStmt) and node.removeType in RELATION_DROPS:
        for names in node.objects or ():
            dropped = object_name(names).name
            context.schema.created_in_run.pop(dropped, None)
            if node.removeType == ObjectType.OBJECT_TABLE:
                context.created_tables.discard(dropped)


def _observe_create_table(node: ast.CreateStmt, context: FileContext) -> None:
    table = table_key(node.relation)
    if node.relation is not None and context.creates(
        relation_name(node.relation), node.if_not_exists
    ):
        context.created_tables.add(table)
        context.record_creation(table, "table")
    for element in node.tableElts or ():
        if isinstance(element, ast.ColumnDef) and element.colname:
            _record_column(context, table, element)
        elif isinstance(element, ast.Constraint):
            _record_constraint(context, table, element)


def _observe_create_table_as(node: ast.CreateTableAsStmt, context: FileContext) -> None:
    relation = node.into.rel if node.into is not None else None
    if relation is not None and context.creates(relation_name(relation), node.if_not_exists):
        table = table_key(relation)
        context.created_tables.add(table)
        matview = node.objtype == ObjectType.OBJECT_MATVIEW
        context.record_creation(table, "materialized view" if matview else "table")


def _observe_rename_table(node: ast.RenameStmt, context: FileContext) -> None:
    """A new table keeps being new under its new name."""
    old, new = table_key(node.relation), str(node.newname)
    if old in context.created_tables:
        context.created_tables.discard(old)
        context.created_tables.add(new)
    creation = context.schema.created_in_run.pop(old, None)
    if creation is not None:
        context.schema.created_in_run[new] = creation


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
    # From 18, NOT NULL itself may be added NOT VALID and validated later, like the CHECK.
    not_null_column = not_null_constraint_column(constraint)
    if not_null_column:
        key = (table, name or f"{table}_{not_null_column}_not_null")  # the server's default
        validated = not constraint.skip_validation
        context.schema.not_null_checks[key] = NotNullCheck(not_null_column, validated)


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
