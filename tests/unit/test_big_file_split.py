"""A file of a megabyte and more is split without PostgreSQL's syntax tree of the whole text:
the statements, their lines and every syntax error must stay the parser's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pglast import split
from pglast.parser import ParseError

from migrate_safe import statements
from migrate_safe.statements import SqlSyntaxError, split_statements

ROWS = 30_000  # about 1.3 MiB of rows: past the size from which files are split frugally


def bulk_insert(rows: int = ROWS, row: str = "({i}, 'name {i}; ),( -- not a comment')") -> str:
    return "INSERT INTO items (id, name) VALUES\n" + ",\n".join(
        row.format(i=i) for i in range(1, rows + 1)
    )


def parser_split(text: str) -> list[tuple[str, int]]:
    """What PostgreSQL's whole grammar makes of the text: each statement and its line."""
    return [(text[s], text.count("\n", 0, s.start) + 1) for s in split(text, only_slices=True)]


def our_split(text: str) -> list[tuple[str, int]]:
    return [(s.sql, s.line) for s in split_statements(text)]


TRICKY = [
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$",
    "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $body$ SELECT ';'; $x$ ; $body$",
    "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
    "CREATE FUNCTION k(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"
    "  SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END;\n  SELECT a;\nEND",
    "CREATE RULE r AS ON INSERT TO items DO ALSO (NOTIFY a; NOTIFY b)",
    "SELECT 'a;b''c;', E'\\';', \"x;\"\"y\" FROM items",
    "SELECT 1 /* a ; /* nested ; */ still ; */",
    "SELECT 2 -- a comment; with a semicolon\n",
    "PREPARE p AS SELECT $1, U&'d\\0061t;', a$b$c FROM items",
]


@pytest.fixture
def longest_parse(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each text handed to PostgreSQL's parser to split."""
    lengths: list[int] = []

    def recording(text: str, **options: bool) -> object:
        lengths.append(len(text))
        return split(text, **options)

    monkeypatch.setattr(statements, "split", recording)
    return lengths


@pytest.mark.parametrize("tricky", TRICKY)
def test_a_big_file_splits_as_the_parser_does_without_parsing_it_whole(
    tricky: str, longest_parse: list[int]
) -> None:
    text = f"-- header\n{tricky};\n{bulk_insert()};\n\n{tricky};\n/* tail */ {tricky}"
    assert len(text) > 1024 * 1024
    assert our_split(text) == parser_split(text)
    assert max(longest_parse) < 300 * 1024  # the syntax tree of a part, never of the file


def test_begin_atomic_bodies_stay_whole_in_a_big_file() -> None:
    function = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END"
    text = f"{function};\n{bulk_insert()};\nSELECT f();\n"
    assert our_split(text)[0] == (function, 1)
    assert len(split_statements(text)) == 3


def test_rows_with_line_comments_that_look_like_row_breaks_split_as_the_parser_does() -> None:
    text = bulk_insert(row="({i}, 'x') -- ),(\n") + ";\nSELECT 1;\n"
    assert our_split(text) == parser_split(text)


def outcome(split_text: Callable[[str], list[tuple[str, int]]], text: str) -> object:
    try:
        return split_text(text)
    except (ParseError, SqlSyntaxError) as error:
        return (
            str(error).rsplit(": ", 1)[-1] if isinstance(error, SqlSyntaxError) else error.args[0]
        )


@pytest.mark.parametrize(
    "odd_row",
    [
        "(6000, 'a' 'b' 'c' x)",  # a bad row in the middle of the INSERT
        "(6000, 'unterminated)",
        "(6000, 1) ON CONFLICT (id) DO UPDATE SET name = (1)",  # a clause where rows must be
        "(6000, 1) RETURNING (id)",  # the rows after it read as more of RETURNING: valid
        "(6000, 1) ORDER BY (1)",  # … or of ORDER BY: valid too
        "(6000, 1 /* ), ( */)",
    ],
)
@pytest.mark.parametrize("rows_per_chunk", ["default", "one"])
def test_odd_rows_in_a_big_insert_give_what_the_parser_gives(
    odd_row: str, rows_per_chunk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if rows_per_chunk == "one":  # every row break is a cut between two chunks of rows
        monkeypatch.setattr(statements, "_ROWS_CHUNK", 1)
    rows = bulk_insert().split(",\n")
    text = ",\n".join([*rows[:5999], odd_row, *rows[6000:]]) + ";\nSELECT 1;\n"
    assert outcome(our_split, text) == outcome(parser_split, text)


def test_a_syntax_error_after_a_big_insert_points_where_the_parser_does() -> None:
    text = f"{bulk_insert()};\nSELECT 1;\nCREATE TABLE (id int);\n"
    with pytest.raises(SqlSyntaxError) as raised:
        split_statements(text)
    assert (raised.value.line, raised.value.column) == (ROWS + 3, 14)
