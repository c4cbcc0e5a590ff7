"""The rule registry: every rule's metadata, and the checks that run per statement.

Rule modules register themselves on import; `rules/__init__.py` imports them all, so importing
`migrate_safe.lint.rules` yields the complete registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from migrate_safe.lint.model import Hit, Rule

if TYPE_CHECKING:
    from migrate_safe.lint.context import FileContext
    from migrate_safe.lint.sqlast import ParsedStatement

StatementCheck = Callable[["ParsedStatement", "FileContext"], Iterator[Hit]]
# A check over the whole file, run after every statement was seen; it says which statement
# each hit belongs to.
FileCheck = Callable[
    [list["ParsedStatement"], "FileContext"], Iterator[tuple["ParsedStatement", Hit]]
]

RULES: dict[str, Rule] = {}
STATEMENT_CHECKS: list[tuple[Rule, StatementCheck]] = []
FILE_CHECKS: list[tuple[Rule, FileCheck]] = []


def register(rule: Rule) -> Rule:
    """Record a rule that some other part of lint reports (file checks, syntax errors)."""
    if rule.id in RULES:
        raise ValueError(f"rule id {rule.id} registered twice")
    RULES[rule.id] = rule
    return rule


def statement_rule(rule: Rule) -> Callable[[StatementCheck], StatementCheck]:
    """Register `rule` with the function that checks one statement for it."""

    def decorate(check: StatementCheck) -> StatementCheck:
        STATEMENT_CHECKS.append((register(rule), check))
        return check

    return decorate


def file_rule(rule: Rule) -> Callable[[FileCheck], FileCheck]:
    """Register `rule` with the function that checks a whole file for it."""

    def decorate(check: FileCheck) -> FileCheck:
        FILE_CHECKS.append((register(rule), check))
        return check

    return decorate
