"""SQL text → statements, transaction control and touched relations, through PostgreSQL's own
parser (pglast).

One place parses migration SQL, so the engine's statement splitting, the rehearsal's lock
report, lint and the checks that look for sessions on touched tables all agree on what a file
does — including which statements would end or split the harness's own transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from pglast import ast, parse_sql, split
from pglast.enums import TransactionStmtKind
from pglast.parser import ParseError, parse_sql_json


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
    """Split into statements; raises SqlSyntaxError with the position of the first error.

    One run asks for the same file's statements several times (the engine, lint, preflight's
    relation look-ups), and the split runs PostgreSQL's whole grammar over the text: the last
    files' splits are kept, so a file is split once per run."""
    return list(_split(text))


@lru_cache(maxsize=2048)
def _split(text: str) -> tuple[Statement, ...]:
    try:
        slices = split(text, only_slices=True)
    except ParseError as error:
        raise _syntax_error(text, error) from None
    statements: list[Statement] = []
    line, counted = 1, 0
    for piece in slices:  # lines counted incrementally: linear on a file of 100,000 statements
        line += text.count("\n", counted, piece.start)
        counted = piece.start
        statements.append(Statement(text[piece], line))
    return tuple(statements)


# --- transaction control -----------------------------------------------------------------

# Leading keywords of every statement that opens, ends or splits a transaction. Only those
# statements are parsed again to learn their kind, so a file of big INSERTs costs nothing here.
_CONTROL_KEYWORD = re.compile(
    r"(?i)(begin|start|commit|end|rollback|abort|savepoint|release|prepare)\b"
)
_KEYWORDS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_RELEASE: "RELEASE SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}
_OPENING = {TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START}


@dataclass(frozen=True)
class TransactionControl:
    """A statement that opens, ends or splits a transaction (BEGIN, COMMIT, SAVEPOINT, …)."""

    statement: Statement
    kind: TransactionStmtKind
    plain: bool  # no options (isolation level, AND CHAIN): nothing is lost by dropping it

    @property
    def keyword(self) -> str:
        return _KEYWORDS[self.kind]

    @property
    def opens(self) -> bool:
        return self.kind in _OPENING

    @property
    def commits(self) -> bool:
        return self.kind == TransactionStmtKind.TRANS_STMT_COMMIT


def transaction_control(statement: Statement) -> TransactionControl | None:
    """The statement's transaction control, or None for every other statement."""
    if not _CONTROL_KEYWORD.match(statement.sql):
        return None
    try:
        tree = parse_sql(statement.sql)
    except ParseError:
        return None
    node = tree[0].stmt if len(tree) == 1 else None
    if not isinstance(node, ast.TransactionStmt) or node.kind is None:
        return None  # PREPARE name AS …, or a statement that merely starts with such a word
    plain = not node.options and not node.chain
    return TransactionControl(statement, TransactionStmtKind(node.kind), plain)


@dataclass(frozen=True)
class ScriptBody:
    """What the harness runs of a file, and the transaction control it found there.

    `wrapper` is the BEGIN … COMMIT pair around the whole file, which is dropped: the harness
    runs the file in its own transaction. `refused` is every other transaction control: each
    would end or split the harness's transaction behind its back, so the file is refused
    before anything runs.
    """

    statements: tuple[Statement, ...]
    wrapper: tuple[TransactionControl, TransactionControl] | None
    refused: tuple[TransactionControl, ...]


def script_body(text: str, *, no_transaction: bool) -> ScriptBody:
    """Split a migration file and classify its transaction control; raises SqlSyntaxError."""
    return classify_transactions(split_statements(text), no_transaction=no_transaction)


def classify_transactions(statements: list[Statement], *, no_transaction: bool) -> ScriptBody:
    """The file's statements without a dropped wrapper, and its refused transaction control:
    the one rule the engine enforces and lint reports."""
    controls = [c for c in map(transaction_control, statements) if c is not None]
    wrapper = None if no_transaction else _wrapper(statements, controls)
    if wrapper is not None:
        return ScriptBody(tuple(statements[1:-1]), wrapper, ())
    return ScriptBody(tuple(statements), None, tuple(controls))


def _wrapper(
    statements: list[Statement], controls: list[TransactionControl]
) -> tuple[TransactionControl, TransactionControl] | None:
    """The plain BEGIN/START TRANSACTION first and COMMIT/END last, with no other control."""
    if len(controls) != 2 or len(statements) < 2:
        return None
    first, last = controls
    wraps = first.statement is statements[0] and last.statement is statements[-1]
    if wraps and first.opens and last.commits and first.plain and last.plain:
        return first, last
    return None


def describe_refusal(control: TransactionControl, *, no_transaction: bool) -> str:
    """Why a transaction-control statement cannot stay, and what to do instead."""
    if no_transaction:
        return (
            f"{control.keyword} in a no-transaction migration: each of its statements runs on "
            "its own, so a transaction block would escape the harness's retries and progress "
            "tracking; move statements that must be atomic into a transactional migration"
        )
    if control.opens or control.commits:
        return (
            f"{control.keyword} inside the file: migrate-safe runs each migration in its own "
            "transaction together with its ledger row, and this would end or split it; remove "
            "it (a plain BEGIN … COMMIT around the whole file is accepted and dropped)"
        )
    return (
        f"{control.keyword}: transaction control would undo or split migrate-safe's "
        "transaction behind its back; remove it, or split the file into migrations"
    )


def touched_relations(text: str) -> set[Relation]:
    """Every relation the SQL names (tables, views, indexed tables); empty when it won't parse."""
    try:
        statements = split_statements(text)
    except SqlSyntaxError:
        return set()
    found: set[Relation] = set()
    for statement in statements:
        found |= statement_relations(statement.sql)
    return found


def statement_relations(statement: str) -> set[Relation]:
    """The relations one statement names; empty when it won't parse.

    Read from the parser's JSON tree: only names are needed, and building pglast's Python
    nodes for the whole statement costs about eight times more. A RangeVar is the one node of
    a raw parse tree with a relname (and, always set, a relpersistence)."""
    found: set[Relation] = set()

    def collect(node: dict[str, object]) -> dict[str, object]:
        if "relname" in node and "relpersistence" in node:
            schema = node.get("schemaname")
            found.add(Relation(str(schema) if schema else None, str(node["relname"])))
        return node

    try:
        json.loads(parse_sql_json(representative(statement)), object_hook=collect)
    except ParseError:
        return set()
    return found


# A statement this long is nearly always a bulk INSERT … VALUES; its rows are parsed only when
# they could name a relation, so a 20 MiB INSERT does not become a 20 MiB syntax tree.
_BIG_STATEMENT = 256 * 1024
_HEAD = 64 * 1024
_VALUES = re.compile(r"(?i)\bvalues\s*\(")
_SELECT = re.compile(r"(?i)\bselect\b")


def representative(statement: str) -> str:
    """The statement itself or, for a big INSERT … VALUES whose rows hold no subquery, the
    INSERT with its first row only: the same relations, at the cost of one row."""
    if len(statement) < _BIG_STATEMENT:
        return statement
    values = _VALUES.search(statement, 0, _HEAD)
    if values is None or _SELECT.search(statement, values.end()) is not None:
        return statement
    first_row = _first_row(statement, values.end() - 1)
    if first_row is None:
        return statement
    return statement[: values.start()] + "VALUES " + first_row


def _first_row(text: str, opening: int) -> str | None:
    """The parenthesised row that starts at `opening`, or None when its end is unclear
    (dollar quotes, escape strings, comments: then the parser reads everything)."""
    depth, index, end = 0, opening, min(len(text), opening + _HEAD)
    while index < end:
        char = text[index]
        if char in "'\"":
            if char == "'" and text[index - 1] in "eE":
                return None  # E'…' strings escape quotes with backslashes
            close = text.find(char, index + 1, end)
            while close != -1 and text.startswith(char * 2, close):
                close = text.find(char, close + 2, end)  # a doubled quote is part of the value
            if close == -1:
                return None
            index = close + 1
            continue
        if char == "$" or text.startswith(("--", "/*"), index):
            return None
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return text[opening : index + 1]
        index += 1
    return None


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
