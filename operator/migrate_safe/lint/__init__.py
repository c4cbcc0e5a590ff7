"""migrate-safe lint: rules over PostgreSQL's own parse tree (pglast), never a database.

Entry points for the CLI and the other commands:
    lint_directory(path, ...)    a migrations directory, including what the loader refuses
    lint_migrations(list, ...)   loaded Migration objects (plan, verify, preflight)
    lint_down_scripts(list, ...) the down scripts a rollback runs, in its order
    lint_sql(text, ...)          one SQL text
    relations_to_look_up(texts)  the relations to read catalog facts (TableFacts) about
    exit_code(findings, strict=) 0 clean, 1 when an error (or, strict, a warning) remains
    render(findings, format)     text | json | github | sarif

Each name is imported from its module on first use (PEP 562), so a command that only needs a
data type (a Finding in a report, TableFacts from the catalog) does not load the rules:
`apply --skip-preflight`, `status` and `--help` start without them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_HOMES = {
    "migrate_safe.lint.config": ("LintConfig", "lint_config_from_table", "load_lint_config"),
    "migrate_safe.lint.context": ("DEFAULT_PG_VERSION", "LintOptions"),
    "migrate_safe.lint.facts": ("RelationFacts", "RelationName", "TableFacts", "TableSize"),
    "migrate_safe.lint.model": ("Bites", "Finding", "Rule", "Severity"),
    "migrate_safe.lint.output": ("FORMATS", "refusal", "render", "summary"),
    "migrate_safe.lint.registry": ("RULES",),
    "migrate_safe.lint.runner": (
        "exit_code",
        "lint_directory",
        "lint_down_scripts",
        "lint_migrations",
        "lint_sql",
        "sort_findings",
    ),
    "migrate_safe.lint.sqlast": ("relations_to_look_up",),
    "migrate_safe.lint.suppress": ("way_out",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> object:
    """`migrate_safe.lint.X`: X from its module, imported now (and cached by Python)."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "RULES":
        import_module("migrate_safe.lint.rules")  # importing the rules fills the registry
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


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
