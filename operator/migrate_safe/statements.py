"""SQL text → statements and touched relations, through PostgreSQL's own parser (pglast).

One place parses migration SQL, so the engine's statement splitting, the rehearsal's lock
report and the checks that look for sessions on touched tables all agree on what a file does.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast, parse_sql, split
from pglast.parser import ParseError
from pglast.visitors import Visitor


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, with where it starts (1-based line) for error messages."""

    sql: str
    line: int


@dataclass(frozen=True)
class SqlSyntaxError(Exception):
    """The parser rejected the text; line and column point into the file."""

    message: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True, order=True)
class Relation:
    """A table, view or index named by a statement; schema is None when unqualified."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _syntax_error(text: str, error: ParseError) -> SqlSyntaxError:
    message = str(error.args[0]) if error.args else "syntax error"
    # No position means the input ended too soon: point at its end.
    has_position = len(error.args) > 1 and error.args[1] is not None
    offset = int(error.args[1]) if has_position else len(text.rstrip())
    line, column = _line_col(text, offset)
    return SqlSyntaxError(message, line, column)


def split_statements(text: str) -> list[Statement]:
    """Split into statements; raises SqlSyntaxError with the position of the first error."""
    try:
        slices = split(text, only_slices=True)
    except ParseError as error:
        raise _syntax_error(text, error) from None
    return [Statement(text[s], _line_col(text, s.start)[0]) for s in slices]


class _RelationCollector(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: set[Relation] = set()

    def visit_RangeVar(self, ancestors: object, node: ast.RangeVar) -> None:
        self.found.add(Relation(node.schemaname, str(node.relname)))


def touched_relations(text: str) -> set[Relation]:
    """Every relation the SQL names (tables, views, indexed tables); empty when it won't parse."""
    try:
        tree = parse_sql(text)
    except ParseError:
        return set()
    collector = _RelationCollector()
    collector(tree)
    return collector.found


def concurrent_index(statement: str) -> Relation | None:
    """The index a CREATE INDEX CONCURRENTLY builds, or None for any other statement.

    A failed concurrent build leaves an INVALID index behind; a retry must drop it first.
    """
    try:
        tree = parse_sql(statement)
    except ParseError:
        return None
    if len(tree) != 1:
        return None
    node = tree[0].stmt
    if not isinstance(node, ast.IndexStmt) or not node.concurrent or not node.idxname:
        return None
    schema = node.relation.schemaname if node.relation else None
    return Relation(schema, str(node.idxname))
