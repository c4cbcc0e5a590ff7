"""Suppression by file directive, statement comment and config: each works and is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_safe.errors import ConfigError
from migrate_safe.lint import LintConfig, Severity, lint_directory, lint_sql, load_lint_config

UNSAFE = "CREATE INDEX i ON orders (a);\n"


def test_file_directive_suppresses_and_says_so() -> None:
    [finding] = lint_sql("-- migrate-safe:allow=MS101\n" + UNSAFE)
    assert finding.rule == "MS101"
    assert finding.suppressed_by == "file directive migrate-safe:allow=MS101"


def test_statement_comment_on_the_line_above_suppresses_only_that_statement() -> None:
    text = "SELECT 1;\n-- migrate-safe:allow=MS101 (tiny table)\n" + UNSAFE + UNSAFE
    first, second = lint_sql(text)
    assert first.suppressed_by == "statement comment migrate-safe:allow=MS101 (line 2)"
    assert second.active


def test_trailing_comment_on_the_statement_line_suppresses() -> None:
    [finding] = lint_sql("SELECT 1;\nCREATE INDEX i ON orders (a); -- migrate-safe:allow=MS101\n")
    assert finding.suppressed_by == "statement comment migrate-safe:allow=MS101 (line 2)"


def test_allow_text_inside_a_string_is_not_a_comment() -> None:
    text = "SELECT 1;\nSELECT '-- migrate-safe:allow=MS101';\n" + UNSAFE
    [finding] = lint_sql(text)
    assert finding.active


def test_allow_for_another_rule_does_not_suppress() -> None:
    [finding] = lint_sql("SELECT 1;\n-- migrate-safe:allow=MS102\n" + UNSAFE)
    assert finding.active


def test_config_disables_and_changes_severity(tmp_path: Path) -> None:
    config_file = tmp_path / "migrate-safe.toml"
    config_file.write_text('[lint]\ndisable = ["MS101"]\n[lint.severity]\nMS102 = "error"\n')
    config = load_lint_config(config_file)
    disabled, raised = lint_sql(UNSAFE + "DROP INDEX i;\n", config=config)
    assert disabled.suppressed_by == f"config: [lint] disable in {config_file}"
    assert (raised.rule, raised.severity, raised.active) == ("MS102", Severity.ERROR, True)


def test_file_directive_suppresses_file_level_findings(tmp_path: Path) -> None:
    (tmp_path / "001_a.up.sql").write_text("-- migrate-safe:allow=MS703\nSELECT 1;\n")
    [finding] = lint_directory(tmp_path)
    assert (finding.rule, finding.suppressed_by) == (
        "MS703",
        "file directive migrate-safe:allow=MS703",
    )


def test_no_settings_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_lint_config(None).disabled == frozenset()
    with pytest.raises(ConfigError, match="no such file"):
        load_lint_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "text",
    [
        '[lint]\ndisable = ["MS999"]\n',
        '[lint]\ndisable = "MS101"\n',
        '[lint.severity]\nMS101 = "fatal"\n',
        "[lint\n",
    ],
)
def test_bad_config_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    config_file = tmp_path / "migrate-safe.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=r"migrate-safe\.toml"):
        load_lint_config(config_file)


def test_with_severity_returns_an_adjusted_copy() -> None:
    config = LintConfig().with_severity("MS703", Severity.WARNING)
    assert config.severity["MS703"] is Severity.WARNING
    assert LintConfig().severity == {}
