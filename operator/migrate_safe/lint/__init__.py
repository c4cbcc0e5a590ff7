"""migrate-safe lint: rules over PostgreSQL's own parse tree (pglast), never a database.

Entry points for the CLI and the other commands:
    lint_directory(path, ...)    a migrations directory, including what the loader refuses
    lint_migrations(list, ...)   loaded Migration objects (plan, verify, preflight)
    lint_down_scripts(list, ...) the down scripts a rollback runs, in its order
    lint_sql(text, ...)          one SQL text
    relations_to_look_up(texts)  the relations to read catalog facts (TableFacts) about
    exit_code(findings, strict=) 0 clean, 1 when an error (or, strict, a warning) remains
    render(findings, format)     text | json | github | sarif
"""

from migrate_safe.lint.config import (
    LintConfig,
    lint_config_from_table,
    load_lint_config,
)
from migrate_safe.lint.context import DEFAULT_PG_VERSION, LintOptions
from migrate_safe.lint.facts import RelationFacts, RelationName, TableFacts, TableSize
from migrate_safe.lint.model import Bites, Finding, Rule, Severity
from migrate_safe.lint.output import FORMATS, refusal, render, summary
from migrate_safe.lint.registry import RULES
from migrate_safe.lint.runner import (
    exit_code,
    lint_directory,
    lint_down_scripts,
    lint_migrations,
    lint_sql,
    sort_findings,
)
from migrate_safe.lint.sqlast import relations_to_look_up
from migrate_safe.lint.suppress import way_out

__all__ = [
    "DEFAULT_PG_VERSION",
    "FORMATS",
    "RULES",
    "Bites",
    "Finding",
    "LintConfig",
    "LintOptions",
    "RelationFacts",
    "RelationName",
    "Rule",
    "Severity",
    "TableFacts",
    "TableSize",
    "exit_code",
    "lint_config_from_table",
    "lint_directory",
    "lint_down_scripts",
    "lint_migrations",
    "lint_sql",
    "load_lint_config",
    "refusal",
    "relations_to_look_up",
    "render",
    "sort_findings",
    "summary",
    "way_out",
]
