"""What the engine reports of a statement, read from its file without copying it whole: the
same line numbers and short text as from the statement's own SQL."""

from __future__ import annotations

import pytest

from migrate_safe.engine import _shorten
from migrate_safe.statements import script_body, split_statements


def _old_shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def test_head_and_newlines_stay_inside_the_statement() -> None:
    first, second = split_statements("SELECT\n1;\nSELECT\n\n2;\n\n")
    assert second.head(3) == "SEL"
    assert second.head(1000) == second.sql
    assert second.newlines_before(7) == 1
    assert second.newlines_before(1000) == second.sql.count("\n")
    assert first.newlines_before(1000) == 1


def test_transaction_control_is_found_from_the_statement_head() -> None:
    text = "SAVEPOINT a;\nPREPARE q AS SELECT 1;\nRELEASE SAVEPOINT a;\nbegin;\n"
    body = script_body(text, no_transaction=False)
    keywords = [control.keyword for control in body.refused]
    assert keywords == ["SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN"]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1",
        "INSERT INTO t VALUES " + ", ".join(f"({i},   'x')" for i in range(2000)),
        "SELECT" + " " * 5000 + "1" + "\n" * 3000 + ", 2" * 400,
        "SELECT " + "a" * 299,
        "SELECT " + "a" * 293,
    ],
)
@pytest.mark.parametrize("limit", [160, 300])
def test_shortened_statement_is_as_from_its_whole_text(text: str, limit: int) -> None:
    (statement,) = split_statements(text)
    assert _shorten(statement, limit) == _old_shorten(statement.sql, limit)
