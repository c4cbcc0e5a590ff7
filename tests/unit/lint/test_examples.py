"""The shipped examples are the project's own advice: they must lint without errors or
warnings. Down migrations that drop what their up migration created are info (MS405)."""

from __future__ import annotations

from pathlib import Path

from migrate_safe.lint import Severity, exit_code, lint_directory

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "migrations"


def test_examples_lint_clean_even_under_strict() -> None:
    findings = lint_directory(EXAMPLES)
    assert exit_code(findings, strict=True) == 0
    assert {f.rule for f in findings if f.active} <= {"MS405"}
    assert all(f.severity is Severity.INFO for f in findings if f.active)


def test_examples_without_harness_timeouts_need_a_lock_timeout() -> None:
    findings = lint_directory(EXAMPLES, harness_timeouts=False)
    assert "MS604" in {f.rule for f in findings}
