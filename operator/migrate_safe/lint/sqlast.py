"""Parsing helpers for lint, on top of `statements.py`: positioned statements and AST questions.

`statements.split_statements` decides where statements start and end (the engine uses the same
split), and this module parses each one into its pglast node and answers the questions the
rules ask: which table, which column type, is this default volatile, is this `col IS NOT NULL`.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from pglast import ast, enums, parse_sql
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType
from pglast.parser import Displacements, ParseError, parse_sql_json
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
            nodes = parse_nodes(representative(statement.sql))
        except ParseError as error:  # split accepted it, the full grammar did not
            raise SqlSyntaxError(str(error.args[0]), statement.line, column) from None
        parsed += [
            ParsedStatement(node, statement.sql, statement.line, column, end_line) for node in nodes
        ]
    return parsed


# --- the syntax tree -------------------------------------------------------------------------
#
# pglast's parse_sql builds each node through a constructor that checks and coerces every
# attribute as it is set: most of lint's parse time. libpg_query's JSON of the same parse,
# read by json (C), gives the same tree for much less: each node is made an instance of
# pglast's own class, so rules read it the same way, and its attributes are set as pglast sets
# them from the C tree (defaults, enums, A_Const values, character offsets), straight into the
# slots. Anything in the JSON this builder does not know sends the statement to parse_sql.
# tests/unit/lint/test_syntax_tree.py proves the trees equal, attribute for attribute.


def parse_nodes(sql: str) -> list[ast.Node]:
    """The statements of `sql` as pglast's syntax tree nodes; raises pglast's ParseError."""
    if not _EMPTY_QUOTE.search(sql):
        try:
            return _TreeBuilder(sql).statements(json.loads(parse_sql_json(sql)))
        except (_UnknownShape, ParseError):  # parse_sql raises the same error, or builds it
            pass
    return [raw.stmt for raw in parse_sql(sql) if raw.stmt is not None]


# The JSON leaves out a text field that is empty, as it does one that is NULL, and pglast tells
# them apart (`LOCATION ''` is '', no LOCATION is None): a statement that may hold an empty
# quoted string or name goes to parse_sql. `''` also matches a quote inside a string: safe.
_EMPTY_QUOTE = re.compile(r"''|\"\"|\$(\w*)\$\$\1\$")


class _UnknownShape(Exception):
    """The JSON holds something the builder was not written for."""


_Convert = Callable[["_TreeBuilder", object], object]
_Set = Callable[[ast.Node, object], None]
# A field whose JSON value is pglast's value: (JSON key, setter, value when left out).
_PlainSlot = tuple[str, _Set, object]
# A field pglast reads through a conversion: (JSON key, setter, conversion, value when left out).
_ConvertedSlot = tuple[str, _Set, _Convert, object]


@dataclass(frozen=True)
class _NodeShape:
    """How to make one node class from its JSON: the fields of each kind, set in that order."""

    node_class: type[ast.Node]
    plain: tuple[_PlainSlot, ...]
    converted: tuple[_ConvertedSlot, ...]
    keys: frozenset[str]


_INTEGERS = frozenset(
    {"int", "int16", "int32", "long", "Index", "AttrNumber", "AclMode", "bits32", "Oid"}
    | {"SubTransactionId", "RelFileNumber"}
)
_PLAIN_DEFAULTS: dict[str, object] = {"bool": False, "char": "\x00", "char*": None} | {
    c_type: 0 for c_type in _INTEGERS
}
_UNKNOWN = object()  # the default of a field the builder cannot make: left out, it falls back


_SHAPES: dict[str, _NodeShape] = {}  # filled as node classes are met


def _shape(name: str) -> _NodeShape:
    node_class = getattr(ast, name, None)
    if not (isinstance(node_class, type) and issubclass(node_class, ast.Node)):
        raise _UnknownShape(name)
    declared = vars(node_class).get("__slots__")  # the attribute → C type map of pglast's class
    plain: list[_PlainSlot] = []
    converted: list[_ConvertedSlot] = []
    for attr, info in declared.items() if isinstance(declared, dict) else ():
        # libpg_query names the field as C does; pglast adds _ to a Python keyword (def_).
        key = attr[:-1] if attr.endswith("_") and keyword.iskeyword(attr[:-1]) else attr
        # The slot's own setter: no check or coercion by Node.__setattr__.
        setter = getattr(node_class, attr).__set__
        if info.c_type in _PLAIN_DEFAULTS:
            plain.append((key, setter, _PLAIN_DEFAULTS[info.c_type]))
        else:
            converted.append((key, setter, *_conversion(info.c_type)))
    keys = frozenset([key for key, *_ in plain] + [key for key, *_ in converted])
    _SHAPES[name] = _NodeShape(node_class, tuple(plain), tuple(converted), keys)
    return _SHAPES[name]


def _conversion(c_type: str) -> tuple[_Convert, object]:
    """How pglast reads a field of this C type, and its value when the JSON leaves it out."""
    if c_type == "ParseLoc":
        return _TreeBuilder.location, 0
    if c_type in ("Node*", "Expr*"):
        return _TreeBuilder.wrapped, None
    if c_type == "List*":
        return _TreeBuilder.items, None
    enum = getattr(enums, c_type, None)
    if isinstance(enum, type) and issubclass(enum, Enum):
        return _TreeBuilder.member_of(dict(enum.__members__)), _zero(enum)
    if c_type.endswith("*") and isinstance(getattr(ast, c_type[:-1], None), type):
        return lambda builder, raw: builder.node(c_type[:-1], raw), None
    return _TreeBuilder.unknown, _UNKNOWN  # not in a parse tree: planner costs, bitmaps


def _zero(enum: type[Enum]) -> object:
    """What pglast makes of a zero in the C struct; an enum of characters has no zero."""
    try:
        return enum(0)
    except ValueError:
        return _UNKNOWN


# A_Const's value: the JSON key of each kind, and pglast's node for it.
_CONSTANT_KINDS = {
    "ival": "Integer",
    "fval": "Float",
    "boolval": "Boolean",
    "sval": "String",
    "bsval": "BitString",
}


class _TreeBuilder:
    """Makes one parse's nodes; locations become character offsets into its text, as pglast's."""

    def __init__(self, sql: str) -> None:
        self._last = len(sql) - 1
        self._characters = None if sql.isascii() else Displacements(sql)

    def statements(self, tree: object) -> list[ast.Node]:
        if not isinstance(tree, dict):
            raise _UnknownShape(tree)
        nodes: list[ast.Node] = []
        for raw in tree.get("stmts", []):
            node = self.wrapped(raw["stmt"]) if "stmt" in raw else None  # none: an empty one
            if isinstance(node, ast.Node):
                nodes.append(node)
            elif node is not None:
                raise _UnknownShape(node)
        return nodes

    def node(self, name: str, fields: object) -> ast.Node:
        if not isinstance(fields, dict):
            raise _UnknownShape(fields)
        if name == "A_Const":
            return self._constant(fields)
        shape = _SHAPES.get(name) or _shape(name)
        if not shape.keys.issuperset(fields):
            raise _UnknownShape(fields)
        node = object.__new__(shape.node_class)
        get = fields.get
        for key, setter, default in shape.plain:
            setter(node, get(key, default))
        for key, setter, convert, default in shape.converted:
            raw = get(key)
            if raw is not None:
                setter(node, convert(self, raw))
            elif default is not _UNKNOWN:
                setter(node, default)
            else:
                raise _UnknownShape(key)
        return node

    def wrapped(self, raw: object) -> object:
        """A Node* field: `{"TypeName": {fields}}`, or a list as `{"List": {"items": […]}}`."""
        if not isinstance(raw, dict) or len(raw) != 1:
            raise _UnknownShape(raw)
        ((name, fields),) = raw.items()
        if name != "List":
            return self.node(name, fields)
        if not isinstance(fields, dict) or fields.keys() != {"items"}:
            raise _UnknownShape(fields)
        return self.items(fields["items"])

    def items(self, raw: object) -> tuple[object, ...]:
        """A List* field; `{}` is a NULL item."""
        if not isinstance(raw, list):
            raise _UnknownShape(raw)
        return tuple([self.wrapped(item) if item else None for item in raw])

    def location(self, raw: object) -> int | None:
        if not isinstance(raw, int):
            raise _UnknownShape(raw)
        if self._characters is not None:
            return self._characters(raw)
        return raw if 0 <= raw <= self._last else None

    @staticmethod
    def member_of(members: dict[str, Enum]) -> _Convert:
        def member(_builder: _TreeBuilder, raw: object) -> Enum:
            found = members.get(str(raw))
            if found is None:
                raise _UnknownShape(raw)
            return found

        return member

    def unknown(self, raw: object) -> object:
        raise _UnknownShape(raw)

    def _constant(self, fields: dict[str, object]) -> ast.Node:
        """pglast's A_Const: `isnull`, and `val` as a node of the constant's kind (pglast
        keeps no location for it)."""
        kinds = [key for key in fields if key in _CONSTANT_KINDS]
        if not fields.keys() <= {"isnull", "location", *kinds} or len(kinds) > 1:
            raise _UnknownShape(fields)
        isnull = fields.get("isnull", False)
        if isnull is True and not kinds:
            value = None
        elif isnull is False and kinds:
            value = self.node(_CONSTANT_KINDS[kinds[0]], fields[kinds[0]])
        else:
            raise _UnknownShape(fields)
        constant = object.__new__(ast.A_Const)
        object.__setattr__(constant, "isnull", isnull)
        object.__setattr__(constant, "val", value)
        return constant


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
                nodes = parse_nodes(statement.sql)
            except ParseError:
                continue
            for node in nodes:
                found.update(judged_names(node))
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
