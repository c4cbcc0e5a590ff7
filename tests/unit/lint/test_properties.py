"""Lint never crashes, whatever the text, and every finding points at a real line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate_safe.lint import lint_sql

SQL_PIECES = st.sampled_from(
    [
        "CREATE INDEX i ON t (a)", "CREATE TABLE t (id int)", "ALTER TABLE t ADD COLUMN c text",
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL", "DROP TABLE t", "BEGIN", "COMMIT",
        "UPDATE t SET a = 1", "-- migrate-safe:allow=MS101", "-- migrate-safe:no-transaction",
        "$$", "'", "/*", "*/", ";", "\n", " ", "(", ")", "VACUUM FULL t", "\x00", "é",
    ]
)  # fmt: skip


def assert_findings_on_real_lines(text: str) -> None:
    line_count = max(1, len(text.splitlines()))
    for finding in lint_sql(text, origin="p.sql"):
        assert 1 <= finding.line <= line_count, finding
        assert finding.column >= 1


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(text: str) -> None:
    assert_findings_on_real_lines(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(SQL_PIECES, max_size=30).map("".join))
def test_sql_like_text_never_crashes(text: str) -> None:
    assert_findings_on_real_lines(text)
