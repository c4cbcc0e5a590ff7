"""Parsing helpers for lint, on top of `statements.py`: positioned statements and AST questions.

`statements.split_statements` decides where statements start and end (the engine uses the same
split), and this module parses each one into its pglast node and answers the questions the
rules ask: which table, which column type, is this default volatile, is this `col IS NOT NULL`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType
from pglast.parser import ParseError
from pglast.visitors import Visitor

from migrate_safe.lint.facts import RelationName
from migrate_safe.statements import SqlSyntaxError, representative, split_statements


@dataclass(frozen=True)
class ParsedStatement:
    """One statement with its AST and its span in the file (1-based lines and column)."""

    node: ast.Node
    sql: str
    line: int
    column: int
    end_line: int

    @cached_property
    def altered_table(self) -> tuple[ast.AlterTableStmt, RelationName] | None:
        """An ALTER TABLE statement and the table it alters (most rules ask about these)."""
        node = self.node
        if not isinstance(node, ast.AlterTableStmt) or node.relation is None:
            return None
        return node, relation_name(node.relation)

    @cached_property
    def declared_columns(self) -> tuple[DeclaredColumn, ...]:
        """(table.column, type, definition) for columns the statement creates or retypes:
        worked out once for the several rules that judge column types."""
        return tuple(_declared_columns(self.node))

    @cached_property
    def added_constraints(self) -> tuple[AddedConstraint, ...]:
        """(constraint, column when inline in ADD COLUMN) for every constraint an ALTER TABLE
        adds, ADD CONSTRAINT first: worked out once for the several constraint rules."""
        return tuple(_added_constraints(self.node))


def parse_script(text: str) -> list[ParsedStatement]:
    """Every statement of `text` with its node; raises SqlSyntaxError pointing into the file."""
    parsed: list[ParsedStatement] = []
    cursor = 0
    for statement in split_statements(text):
        # The statement is an exact slice of the text, so find() recovers its offset.
        offset = text.find(statement.sql, cursor)
        cursor = offset + len(statement.sql)
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        end_line = statement.line + statement.sql.count("\n")
        try:
            # A bulk INSERT is read from its head and first row: the rules see the same
            # statement, and a 20 MiB file does not become a 20 MiB syntax tree.
            raw_statements = parse_sql(representative(statement.sql))
        except ParseError as error:  # split accepted it, the full grammar did not
            raise SqlSyntaxError(str(error.args[0]), statement.line, column) from None
        parsed += [
            ParsedStatement(raw.stmt, statement.sql, statement.line, column, end_line)
            for raw in raw_statements
            if raw.stmt is not None
        ]
    return parsed


# --- names ---------------------------------------------------------------------------------


def table_name(relation: ast.RangeVar | None) -> str:
    """The relation as written (schema-qualified when it was)."""
    if relation is None:
        return "?"
    name = str(relation.relname)
    return f"{relation.schemaname}.{name}" if relation.schemaname else name


def table_key(relation: ast.RangeVar | None) -> str:
    """The key lint tracks tables by: the bare name, so `t` and `public.t` are one table."""
    return str(relation.relname) if relation is not None else "?"


def dotted(names: Iterable[ast.Node]) -> str:
    return ".".join(str(getattr(part, "sval", part)) for part in names)


def relation_name(relation: ast.RangeVar) -> RelationName:
    """The name to look the relation up by in the catalog facts."""
    return RelationName(relation.schemaname or None, str(relation.relname))


def object_name(names: Iterable[ast.Node]) -> RelationName:
    """A DROP's `[schema.]name` (a leading database name is ignored)."""
    parts = [str(getattr(part, "sval", part)) for part in names]
    return RelationName(parts[-2] if len(parts) > 1 else None, parts[-1])


# DROP statements whose objects are relations (named by a list, not a RangeVar).
RELATION_DROPS = frozenset(
    {
        ObjectType.OBJECT_TABLE,
        ObjectType.OBJECT_INDEX,
        ObjectType.OBJECT_VIEW,
        ObjectType.OBJECT_MATVIEW,
        ObjectType.OBJECT_SEQUENCE,
        ObjectType.OBJECT_FOREIGN_TABLE,
    }
)


# Leading keywords of the statements whose tables lint judges (see `judged_names`). Only those
# are parsed to find the names, so a file of big INSERTs costs next to nothing here.
_JUDGED_KEYWORD = re.compile(
    r"(?:\s|--[^\n]*|/\*.*?\*/)*"
    r"(create|alter|drop|truncate|reindex|cluster|vacuum|lock|update|delete)\b",
    re.IGNORECASE | re.DOTALL,
)


def judged_names(node: ast.Node) -> Iterator[RelationName]:
    """The relations whose catalog facts decide a finding on this statement: the subject
    of every rule that bites only under a condition, and what a CREATE … IF NOT EXISTS may
    find already there."""
    if isinstance(node, ast.IndexStmt) and node.relation is not None:
        yield relation_name(node.relation)
        if node.idxname:
            yield RelationName(node.relation.schemaname or None, str(node.idxname))
    elif isinstance(node, ast.DropStmt) and node.removeType in RELATION_DROPS:
        yield from (object_name(names) for names in node.objects or ())
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        yield from _ranges([node.into.rel])
    elif isinstance(node, ast.VacuumStmt):
        yield from _ranges(r.relation for r in node.rels or () if isinstance(r, ast.VacuumRelation))
    elif isinstance(node, ast.TruncateStmt | ast.LockStmt):
        yield from _ranges(node.relations or ())
    else:
        yield from _ranges([getattr(node, "relation", None)])


def _ranges(relations: Iterable[object]) -> Iterator[RelationName]:
    return (relation_name(r) for r in relations if isinstance(r, ast.RangeVar))


def relations_to_look_up(texts: Iterable[str]) -> frozenset[RelationName]:
    """Every relation whose catalog facts lint would judge a finding in these SQL texts by.
    A text that does not parse names nothing (its syntax-error finding says why)."""
    found: set[RelationName] = set()
    for text in texts:
        try:
            statements = split_statements(text)
        except SqlSyntaxError:
            continue
        for statement in statements:
            if not _JUDGED_KEYWORD.match(statement.sql):
                continue
            try:
                raw_statements = parse_sql(statement.sql)
            except ParseError:
                continue
            for raw in raw_statements:
                if raw.stmt is not None:
                    found.update(judged_names(raw.stmt))
    return frozenset(found)


# --- ALTER TABLE ---------------------------------------------------------------------------


def alter_commands(node: ast.Node, *subtypes: AlterTableType) -> Iterator[ast.AlterTableCmd]:
    """The sub-commands of an ALTER TABLE statement that have one of `subtypes`. ALTER TYPE
    … ADD/DROP/ALTER ATTRIBUTE parses as the same statement, but changes a composite type, not
    a table: no table rule applies to it."""
    if not isinstance(node, ast.AlterTableStmt) or node.objtype == ObjectType.OBJECT_TYPE:
        return
    for command in node.cmds or ():
        if isinstance(command, ast.AlterTableCmd) and command.subtype in subtypes:
            yield command


def column_constraints(column: ast.ColumnDef, *kinds: ConstrType) -> list[ast.Constraint]:
    return [
        c
        for c in column.constraints or ()
        if isinstance(c, ast.Constraint) and (not kinds or c.contype in kinds)
    ]


def added_column(command: ast.AlterTableCmd) -> ast.ColumnDef | None:
    return command.def_ if isinstance(command.def_, ast.ColumnDef) else None


def added_constraint(command: ast.AlterTableCmd) -> ast.Constraint | None:
    return command.def_ if isinstance(command.def_, ast.Constraint) else None


def not_null_constraint_column(constraint: ast.Constraint) -> str | None:
    """`CONSTRAINT c NOT NULL col` (a table constraint from PostgreSQL 18) → col."""
    keys = constraint.keys or ()
    if constraint.contype != ConstrType.CONSTR_NOTNULL or len(keys) != 1:
        return None
    return str(getattr(keys[0], "sval", "")) or None


def not_null_check_column(expression: ast.Node | None) -> str | None:
    """`col IS NOT NULL` → col: the CHECK that lets SET NOT NULL skip its scan (PG12+)."""
    if not isinstance(expression, ast.NullTest):
        return None
    if expression.nulltesttype != NullTestType.IS_NOT_NULL:
        return None
    argument = expression.arg
    if isinstance(argument, ast.ColumnRef) and argument.fields and len(argument.fields) == 1:
        return str(getattr(argument.fields[0], "sval", ""))
    return None


def option_enabled(options: Iterable[ast.Node] | None, name: str) -> bool:
    """Whether a `(FULL)`-style option is on: present and not written as false/off/0."""
    for option in options or ():
        if isinstance(option, ast.DefElem) and option.defname == name:
            value = getattr(option.arg, "sval", getattr(option.arg, "ival", True))
            return str(value).lower() not in ("false", "off", "0")
    return False


# --- types ---------------------------------------------------------------------------------

_TYPE_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "decimal": "numeric",
    "serial4": "serial",
    "serial8": "bigserial",
    "serial2": "smallserial",
    "boolean": "bool",
    "float": "float8",
}
SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial"})


@dataclass(frozen=True)
class ColumnType:
    """A column type reduced to what rewrite decisions need: name, modifiers, array-ness."""

    name: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    def __str__(self) -> str:
        modifiers = f"({','.join(map(str, self.modifiers))})" if self.modifiers else ""
        return f"{self.name}{modifiers}{'[]' if self.array else ''}"


def column_type(type_name: ast.TypeName | None) -> ColumnType | None:
    if type_name is None or not type_name.names:
        return None
    raw = str(getattr(type_name.names[-1], "sval", "")).lower()
    modifiers = tuple(
        int(modifier.val.ival or 0)
        for modifier in type_name.typmods or ()
        if isinstance(modifier, ast.A_Const) and isinstance(modifier.val, ast.Integer)
    )
    return ColumnType(_TYPE_ALIASES.get(raw, raw), modifiers, bool(type_name.arrayBounds))


AddedConstraint = tuple[ast.Constraint, str | None]


def _added_constraints(node: ast.Node) -> Iterator[AddedConstraint]:
    for command in alter_commands(node, AlterTableType.AT_AddConstraint):
        constraint = added_constraint(command)
        if constraint is not None:
            yield constraint, None
    for command in alter_commands(node, AlterTableType.AT_AddColumn):
        column = added_column(command)
        if column is not None:
            yield from ((c, str(column.colname)) for c in column_constraints(column))


DeclaredColumn = tuple[str, ColumnType, ast.ColumnDef]


def _declared_columns(node: ast.Node) -> Iterator[DeclaredColumn]:
    if isinstance(node, ast.CreateStmt):
        table = table_name(node.relation)
        columns = [e for e in node.tableElts or () if isinstance(e, ast.ColumnDef)]
        named = [(f"{table}.{c.colname}", c) for c in columns]
    elif isinstance(node, ast.AlterTableStmt):
        table = table_name(node.relation)
        commands = alter_commands(
            node, AlterTableType.AT_AddColumn, AlterTableType.AT_AlterColumnType
        )
        named = []
        for command in commands:
            column = added_column(command)
            if column is not None:
                named.append((f"{table}.{column.colname or command.name}", column))
    else:
        return
    for where, column in named:
        found = column_type(column.typeName)
        if found is not None:
            yield where, found, column


# --- volatility ----------------------------------------------------------------------------

# Built-ins that are VOLATILE: as a column default they are evaluated per row, so PostgreSQL
# rewrites the table to store each row's value.
VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "gen_random_bytes",
        "clock_timestamp",
        "timeofday",
        "nextval",
        "setval",
        "txid_current",
        "pg_current_xact_id",
    }
)
# Built-ins that are STABLE or IMMUTABLE: evaluated once, stored in the catalog (PG11+), so
# ADD COLUMN with them as default is catalog-only. now() is STABLE: it does not rewrite.
NON_VOLATILE_FUNCTIONS = frozenset(
    {
        "now",
        "statement_timestamp",
        "transaction_timestamp",
        "current_setting",
        "lower",
        "upper",
        "length",
        "btrim",
        "ltrim",
        "rtrim",
        "concat",
        "concat_ws",
        "replace",
        "substring",
        "left",
        "right",
        "format",
        "md5",
        "encode",
        "decode",
        "abs",
        "round",
        "floor",
        "ceil",
        "date_trunc",
        "date_part",
        "extract",
        "timezone",
        "to_char",
        "to_date",
        "to_timestamp",
        "make_date",
        "make_time",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "jsonb_build_object",
        "jsonb_build_array",
        "json_build_object",
        "json_build_array",
        "array_fill",
    }
)


class _FunctionNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
        if node.funcname:
            self.names.append(str(getattr(node.funcname[-1], "sval", "")).lower())


def called_functions(expression: ast.Node | None) -> list[str]:
    if expression is None:
        return []
    collector = _FunctionNames()
    collector(expression)
    return collector.names


def volatile_calls(expression: ast.Node | None) -> tuple[list[str], list[str]]:
    """(known volatile functions, functions of unknown volatility) called by the expression."""
    names = called_functions(expression)
    volatile = [n for n in names if n in VOLATILE_FUNCTIONS]
    unknown = [n for n in names if n not in VOLATILE_FUNCTIONS | NON_VOLATILE_FUNCTIONS]
    return volatile, unknown


def is_null_constant(expression: ast.Node | None) -> bool:
    return isinstance(expression, ast.A_Const) and bool(expression.isnull)
