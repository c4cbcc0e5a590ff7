"""SQL text → statements, transaction control and touched relations, through PostgreSQL's own
parser (pglast).

One place parses migration SQL, so the engine's statement splitting, the rehearsal's lock
report, lint and the checks that look for sessions on touched tables all agree on what a file
does — including which statements would end or split the harness's own transaction.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache

from pglast import ast, parse_sql, split
from pglast.enums import TransactionStmtKind
from pglast.parser import ParseError, parse_sql_json


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, with where it starts (1-based line) for error messages.

    It is kept as a span of the file's text, cut out each time `sql` is read: a 20 MiB
    INSERT is then not held twice, as the file and as its statement, for the whole run."""

    source: str = field(repr=False)  # the statement, or the text it is a span of
    line: int
    start: int = 0
    end: int | None = None  # None: the end of `source`

    @property
    def sql(self) -> str:
        if self.start == 0 and self.end is None:
            return self.source
        return self.source[self.start : self.end]

    @property
    def _stop(self) -> int:
        return len(self.source) if self.end is None else self.end

    def head(self, length: int) -> str:
        """The statement's first `length` characters, without cutting out the rest."""
        return self.source[self.start : min(self._stop, self.start + length)]

    def newlines_before(self, offset: int) -> int:
        """How many line breaks the statement has before its `offset`-th character."""
        return self.source.count("\n", self.start, min(self._stop, self.start + offset))


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
    relation look-ups): the last files' splits are kept, so a file is split once per run."""
    return list(_split(text))


@lru_cache(maxsize=2048)
def _split(text: str) -> tuple[Statement, ...]:
    spans = _scanned_spans(text) if len(text) >= _BIG_FILE else None
    if spans is None:
        spans = _parsed_spans(text)
    statements: list[Statement] = []
    line, counted = 1, 0
    for start, end in spans:  # lines counted incrementally: linear on 100,000 statements
        line += text.count("\n", counted, start)
        counted = start
        statements.append(Statement(text, line, start, end))
    return tuple(statements)


def _parsed_spans(text: str) -> list[tuple[int, int]]:
    """The statements' spans as PostgreSQL's whole grammar reads the text."""
    try:
        return [(piece.start, piece.stop) for piece in split(text, only_slices=True)]
    except ParseError as error:
        raise _syntax_error(text, error) from None


# --- splitting a big file without its syntax tree ----------------------------------------
#
# The parser's split builds the whole file's syntax tree: for a 20 MiB INSERT of 200,000 rows,
# about 100 MiB of C nodes. From _BIG_FILE on, the text is cut at its semicolons by a lexer of
# the few things that can hide one (quotes, dollar quotes, comments), and the parser splits
# each part of bounded size between two cuts. A part that does not parse alone (a syntax error,
# a BEGIN ATOMIC body cut between two parts) sends the whole text to the parser, so the
# result is the parser's in every case, and so is every syntax error.

_BIG_FILE = 1024 * 1024
_GROUP = 256 * 1024  # statements confirmed together, up to this many characters
_ROWS_CHUNK = 256 * 1024  # rows of a bulk INSERT parsed together (~1.5 MiB of syntax tree)
_CUTS_TRIED = 8
_SPACE = " \t\n\r\f\v"  # PostgreSQL's whitespace
_DIGITS = "0123456789"


def _name_char(also: str = "") -> str:
    """A character class: what may start a name as PostgreSQL's lexer reads it (an ASCII
    letter, "_" or any non-ASCII character), or one of `also`.

    Written as "anything but the other ASCII characters": the same class as
    [A-Za-z_\\x80-\\U0010ffff…], which takes milliseconds to compile in every process that
    imports this module, while this one takes microseconds."""
    allowed = set(string.ascii_letters + "_" + also)
    others = "".join(re.escape(chr(code)) for code in range(128) if chr(code) not in allowed)
    return f"[^{others}]"


# Text that can neither end a statement nor hide a semicolon, matched in one go: everything
# but the characters that may start a semicolon, quote, comment or dollar quote, and the
# quotes, quoted names and line comments that are whole.
_PLAIN = re.compile(
    r"(?:[^;'\"$/\-eE]++"
    r"|'[^']*+(?:''[^']*+)*+'"
    r"|\"[^\"]*+(?:\"\"[^\"]*+)*+\""
    r"|--[^\n\r]*+"
    r"|/(?!\*)|-|[eE](?!')"
    rf"|\$(?!{_name_char('$')}))*+"
)
_BLANKS = re.compile(rf"(?:[{_SPACE}]++|--[^\n\r]*+)*+")
_DOLLAR_QUOTE = re.compile(rf"\$(?:{_name_char()}{_name_char(_DIGITS)}*+)?\$")
_IDENT = re.compile(_name_char(_DIGITS + "$"))
_CLOSING_QUOTE = {
    "'": re.compile(r"[^']*+(?:''[^']*+)*+'"),
    '"': re.compile(r'[^"]*+(?:""[^"]*+)*+"'),
}
_CLOSING_ESCAPED = re.compile(r"(?:[^'\\]++|\\.|'')*+'", re.DOTALL)
_COMMENT_MARK = re.compile(r"/\*|\*/")


def _scanned_spans(text: str) -> list[tuple[int, int]] | None:
    """The parser's spans, found without the whole text's syntax tree; None when only the
    parser of the whole text can say."""
    lexed = _lexed_spans(text)
    if lexed is None:
        return None
    spans: list[tuple[int, int]] = []
    for group in _groups(lexed):
        parsed = _parsed_group(text, group)
        if parsed is None:
            return None
        spans += parsed
    return spans


def _lexed_spans(text: str) -> list[tuple[int, int]] | None:
    """Each statement from its first token to the semicolon that ends it (trailing blanks
    dropped, as the parser's split does); None on an unterminated quote or comment."""
    spans: list[tuple[int, int]] = []
    position = 0
    while position < len(text):
        start = _statement_start(text, position)
        if start is None:
            return None
        if start == len(text) or text[start] == ";":
            position = start + 1
            continue
        end = _statement_end(text, start)
        if end is None:
            return None
        spans.append((start, _stripped_end(text, start, end)))
        position = end + 1
    return spans


def _statement_start(text: str, position: int) -> int | None:
    """The first token at or after `position`, past blanks and comments."""
    while True:
        position = _matched_end(_BLANKS, text, position)
        if not text.startswith("/*", position):
            return position
        end = _block_comment_end(text, position + 2)
        if end is None:
            return None
        position = end


def _statement_end(text: str, position: int) -> int | None:
    """The semicolon that ends the statement (or the text's end); None when unterminated."""
    while True:
        position = _matched_end(_PLAIN, text, position)
        if position == len(text) or text[position] == ";":
            return position
        after = _quoted_end(text, position)
        if after is None:
            return None
        position = after


def _matched_end(pattern: re.Pattern[str], text: str, position: int) -> int:
    """Where a pattern that matches the empty string stops matching."""
    matched = pattern.match(text, position)
    return matched.end() if matched is not None else position


def _quoted_end(text: str, position: int) -> int | None:
    """The end of the quote, comment or dollar quote at `position` (what _PLAIN stops at)."""
    char = text[position]
    after_name = position > 0 and _IDENT.match(text, position - 1) is not None
    if char == "/":
        return _block_comment_end(text, position + 2)
    if char == "$":
        tag = _DOLLAR_QUOTE.match(text, position)
        if tag is None or after_name:
            return position + 1  # a parameter, or part of a name
        close = text.find(tag[0], tag.end())
        return None if close == -1 else close + len(tag[0])
    if char in "eE":  # E'…': backslash escapes, unless the E ends a name
        closing = _CLOSING_QUOTE["'"] if after_name else _CLOSING_ESCAPED
        matched = closing.match(text, position + 2)
    else:
        matched = _CLOSING_QUOTE[char].match(text, position + 1)
    return None if matched is None else matched.end()


def _block_comment_end(text: str, position: int) -> int | None:
    depth = 1  # PostgreSQL's block comments nest
    while depth:
        mark = _COMMENT_MARK.search(text, position)
        if mark is None:
            return None
        depth += 1 if mark[0] == "/*" else -1
        position = mark.end()
    return position


def _stripped_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _groups(spans: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Consecutive statements of up to _GROUP characters; a bigger statement on its own."""
    groups: list[list[tuple[int, int]]] = []
    for span in spans:
        last = groups[-1] if groups else None
        small = span[1] - span[0] < _GROUP
        if last is not None and small and span[1] - last[0][0] < _GROUP:
            last.append(span)
        else:
            groups.append([span])
    return groups


def _parsed_group(text: str, group: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """The parser's spans of this part of the text, or None when it does not parse alone.

    The lexer's cuts are only candidates: a BEGIN ATOMIC body holds semicolons that do not
    end its statement, and the parser joins its pieces again. A part that parses alone
    ends where a statement of the whole text ends: a semicolon after a complete statement
    always ends it."""
    begin, end = group[0][0], group[-1][1]
    insert = _bulk_insert(text, begin, end) if len(group) == 1 else None
    if insert is not None:
        return group if _rows_confirmed(text, insert, end) else None
    try:
        pieces = split(text[begin:end], only_slices=True)
    except ParseError:
        return None
    return [(piece.start + begin, piece.stop + begin) for piece in pieces]


# The head of a bulk INSERT whose rows can be confirmed chunk by chunk: a table, maybe columns,
# maybe OVERRIDING … VALUE, and no quote, comment or parenthesis anywhere else.
_PLAIN_INSERT_HEAD = re.compile(
    rf"(?i)insert[{_SPACE}]+into[{_SPACE}]+[\w$.\"{_SPACE}]+"
    rf"(?:\([\w$.\",{_SPACE}]*\))?[\w{_SPACE}]*"
)
_ROW_BREAK = re.compile(rf"\)[{_SPACE}]*,[{_SPACE}]*\(")
_WORD_AFTER_ROW = re.compile(rf"\)[{_SPACE}]*+(?:{_name_char()}|/\*|--)")


@dataclass(frozen=True)
class _BulkInsert:
    head: str  # up to VALUES
    rows: int  # where the first row's "(" is


def _bulk_insert(text: str, begin: int, end: int) -> _BulkInsert | None:
    """A big statement that is a plain INSERT … VALUES, or None."""
    if end - begin < _BIG_STATEMENT:
        return None
    values = _VALUES.search(text, begin, min(end, begin + _HEAD))
    if values is None:
        return None
    head = text[begin : values.start()]
    if not _PLAIN_INSERT_HEAD.fullmatch(head) or head.count('"') % 2:
        return None
    return _BulkInsert(head, values.end() - 1)


def _rows_confirmed(text: str, insert: _BulkInsert, end: int) -> bool:
    """Whether a bulk INSERT parses, read _ROWS_CHUNK characters of rows at a time."""
    position = insert.rows
    while position < end:
        after = _confirmed_chunk_end(text, insert.head, position, end)
        if after is None:
            return False
        position = after
    return True


def _confirmed_chunk_end(text: str, head: str, start: int, end: int) -> int | None:
    """Where the next row after a chunk of rows from `start` begins (`end` after the last
    chunk), or None when no chunk parses.

    A chunk is cut at a ")," past _ROWS_CHUNK characters; a cut inside a string, quoted name,
    dollar quote or comment does not parse (for a line comment: the ")" closing the WITH is
    in it), and the next few cuts are tried. The INSERT in the WITH proves the chunk's rows
    are rows, followed perhaps by a clause (RETURNING, ORDER BY, …) that would not parse
    before the next chunk. Such a clause starts with a word or comment after a ")": a chunk
    that has one (a string may, too) is parsed again inside ARRAY[…], where only expressions
    parse. So chunks that all parse mean the whole statement parses."""
    cut = _row_break(text, start + _ROWS_CHUNK, end)
    for _ in range(_CUTS_TRIED):
        rows = text[start : end if cut is None else cut.start() + 1]
        parses = _one_statement(f"WITH q AS ({head}VALUES {rows}) SELECT")
        if parses and cut is not None and _WORD_AFTER_ROW.search(rows) is not None:
            parses = _one_statement(f"SELECT ARRAY[{rows}]")
        if parses:
            return end if cut is None else cut.end() - 1
        if cut is None:
            return None
        cut = _row_break(text, cut.end(), end)
    return None


def _row_break(text: str, start: int, end: int) -> re.Match[str] | None:
    return _ROW_BREAK.search(text, start, end) if start < end else None


def _one_statement(sql: str) -> bool:
    try:
        return len(split(sql, only_slices=True)) == 1
    except ParseError:
        return False


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
_LONGEST_KEYWORD = len("savepoint") + 1  # and the character after it, for \b
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
    if not _CONTROL_KEYWORD.match(statement.head(_LONGEST_KEYWORD)):
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
# The word SELECT in any case: a case-insensitive pattern with \b reads 20 MiB of rows five
# times slower than this one, which starts with a plain character class.
_SELECT = re.compile(r"[sS](?<!\w[sS])[eE][lL][eE][cC][tT](?!\w)")


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
