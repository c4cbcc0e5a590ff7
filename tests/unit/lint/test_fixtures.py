"""Every rule has an unsafe fixture it flags and a safe rewrite it accepts; so do the examples
in docs/lint-rules.md, which are generated from the registry and must stay in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migrate_safe.lint import RULES, Finding, LintOptions, lint_directory, lint_sql
from migrate_safe.lint.docs import render_docs

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "lint_fixtures"
DOCS = ROOT / "docs" / "lint-rules.md"
PG_VERSION_MARKER = re.compile(r"^-- lint-fixture: pg-version=(\d+)$", re.M)


def options_for(text: str) -> LintOptions:
    """Lint options that a fixture asks for in its `-- lint-fixture:` comments."""
    version = PG_VERSION_MARKER.search(text)
    return LintOptions(
        pg_version=int(version[1]) if version else LintOptions.pg_version,
        harness_timeouts="-- lint-fixture: no-harness-timeouts" not in text,
    )


def lint_example(text: str, origin: str, direction: str = "up") -> list[Finding]:
    return lint_sql(text, origin=origin, direction=direction, options=options_for(text))


def lint_fixture(path: Path) -> list[Finding]:
    if path.is_dir():
        return lint_directory(path)
    direction = "down" if path.name.endswith(".down.sql") else "up"
    return lint_example(path.read_text(), str(path), direction)


def fixture(rule: str, kind: str) -> Path:
    matches = sorted((FIXTURES / rule).glob(f"{kind}*"))
    assert matches, f"tests/lint_fixtures/{rule} has no {kind} fixture"
    return matches[0]


def active_rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.active}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_unsafe_fixture_is_flagged(rule: str) -> None:
    findings = lint_fixture(fixture(rule, "unsafe"))
    assert rule in active_rules(findings), findings


@pytest.mark.parametrize("rule", sorted(RULES))
def test_safe_rewrite_lints_clean_for_its_rule(rule: str) -> None:
    findings = lint_fixture(fixture(rule, "safe"))
    assert rule not in active_rules(findings), findings


def test_every_fixture_directory_names_a_registered_rule() -> None:
    directories = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert directories == set(RULES)


def _docs_direction(rule: str) -> str:
    return "down" if rule == "MS405" else "up"


# These rules are about file names, so their docs examples are names, not SQL.
NAMING_RULES = {"MS702", "MS703", "MS704", "MS705", "MS706", "MS708"}


@pytest.mark.parametrize("rule", sorted(set(RULES) - NAMING_RULES))
def test_docs_examples_show_the_danger_and_the_rewrite(rule: str) -> None:
    entry = RULES[rule]
    unsafe = lint_example(entry.unsafe_example, "docs", _docs_direction(rule))
    safe = lint_example(entry.safe_example, "docs", _docs_direction(rule))
    assert rule in active_rules(unsafe)
    assert rule not in active_rules(safe)


def test_docs_file_is_generated_from_the_registry() -> None:
    assert DOCS.read_text() == render_docs(), "run: python -m migrate_safe.lint.docs > " + str(
        DOCS.relative_to(ROOT)
    )


def test_every_rule_has_a_docs_section() -> None:
    text = DOCS.read_text()
    for rule in RULES:
        assert f"\n### {rule}\n" in text
