"""Report formats a user or a CI system reads, and the exit code contract of `lint`."""

from __future__ import annotations

import json
import re

from migrate_safe.lint import Finding, Severity, exit_code, lint_sql, render

TEXT = (
    "-- migrate-safe:allow=MS402\n"
    "CREATE INDEX i ON orders (a);\n"
    "DROP INDEX j;\n"
    "ALTER TABLE orders ADD COLUMN note varchar(10);\n"
    "ALTER TABLE orders DROP COLUMN legacy;\n"
)
GITHUB_LINE = re.compile(
    r"^::(error|warning|notice) file=[^,]+,line=\d+,col=\d+,title=MS\d{3}::.+$"
)


def findings() -> list[Finding]:
    return lint_sql(TEXT, origin="db/005_x.up.sql")


def test_text_lists_location_rule_severity_message_and_safe_alternative() -> None:
    lines = render(findings(), "text").splitlines()
    assert lines[0] == (
        "db/005_x.up.sql:2:1: MS101 error: CREATE INDEX on orders without CONCURRENTLY "
        "blocks writes (SHARE lock) for the whole build; how long it lasts grows with the "
        "table's rows; on a new or empty table it does not matter"
    )
    assert lines[1].startswith("  safe alternative: CREATE INDEX CONCURRENTLY")
    assert any("MS402 error (suppressed by file directive" in line for line in lines)
    assert lines[-1] == "1 error(s), 1 warning(s), 1 info, 1 suppressed"


def test_json_carries_every_field_and_a_summary() -> None:
    document = json.loads(render(findings(), "json"))
    assert document["summary"] == {"error": 1, "warning": 1, "info": 1, "suppressed": 1}
    first = document["findings"][0]
    assert set(first) == {
        "rule", "severity", "file", "line", "column", "message", "safe_alternative",
        "suppressed_by",
    }  # fmt: skip
    assert first["severity"] == "error"


def test_github_annotations_match_the_workflow_command_syntax() -> None:
    lines = render(findings(), "github").splitlines()
    assert len(lines) == 3  # the suppressed finding is left out
    assert all(GITHUB_LINE.match(line) for line in lines)
    assert lines[0].startswith("::error file=db/005_x.up.sql,line=2,col=1,title=MS101::")
    assert "%0Asafe alternative" in lines[0]


def test_github_escapes_separators_in_file_names() -> None:
    [line] = render(lint_sql("DROP INDEX i;", origin="a,b:c.sql"), "github").splitlines()
    assert line.startswith("::warning file=a%2Cb%3Ac.sql,line=1")


def test_sarif_has_the_required_top_level_shape_and_rule_metadata() -> None:
    document = json.loads(render(findings(), "sarif"))
    assert document["version"] == "2.1.0"
    assert "sarif-2.1.0" in document["$schema"]
    [run] = document["runs"]
    driver = run["tool"]["driver"]
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert "MS101" in rule_ids and driver["name"] == "migrate-safe"
    results = run["results"]
    assert {r["level"] for r in results} == {"error", "warning", "note"}
    first = results[0]
    assert driver["rules"][first["ruleIndex"]]["id"] == first["ruleId"] == "MS101"
    region = first["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 2, "startColumn": 1}
    suppressed = [r for r in results if "suppressions" in r]
    assert [s["suppressions"][0]["kind"] for s in suppressed] == ["inSource"]


def finding(severity: Severity, suppressed_by: str | None = None) -> Finding:
    return Finding("MS101", severity, "f.sql", 1, 1, "m", "s", suppressed_by)


def test_exit_code_is_one_only_for_remaining_errors_or_strict_warnings() -> None:
    assert exit_code([]) == 0
    assert exit_code([finding(Severity.INFO), finding(Severity.WARNING)]) == 0
    assert exit_code([finding(Severity.WARNING)], strict=True) == 1
    assert exit_code([finding(Severity.INFO)], strict=True) == 0
    assert exit_code([finding(Severity.ERROR)]) == 1
    assert exit_code([finding(Severity.ERROR, "file directive")]) == 0
