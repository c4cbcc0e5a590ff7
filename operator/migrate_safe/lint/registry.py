"""The rule registry: every rule's metadata, and the checks that run per statement.

Rule modules register themselves on import; `rules/__init__.py` imports them all, so importing
`migrate_safe.lint.rules` yields the complete registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pglast import ast
from pglast.enums import AlterTableType

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
# What a statement check looks at: statements of a node type, or ALTER TABLE statements with
# a sub-command of a type (`ALTER TABLE … ADD COLUMN` is AT_AddColumn).
Match = type[ast.Node] | AlterTableType
# A statement as dispatch sees it: its node type and, for ALTER TABLE, its sub-command types.
_Shape = tuple[type[ast.Node], frozenset[AlterTableType]]
_NO_COMMANDS: frozenset[AlterTableType] = frozenset()


@dataclass(frozen=True)
class StatementRule:
    """A rule, its check, and the statements the check is called for."""

    rule: Rule
    check: StatementCheck
    node_types: tuple[type[ast.Node], ...]
    commands: frozenset[AlterTableType]

    def matches(self, shape: _Shape) -> bool:
        node_type, commands = shape
        return issubclass(node_type, self.node_types) or not self.commands.isdisjoint(commands)


RULES: dict[str, Rule] = {}
STATEMENT_CHECKS: list[StatementRule] = []
FILE_CHECKS: list[tuple[Rule, FileCheck]] = []
# Filled on first use: each statement meets only the few checks that can match it, instead
# of every rule rejecting it in turn (a migration is mostly ALTER TABLE of one kind or two).
_CHECKS_BY_SHAPE: dict[_Shape, tuple[StatementRule, ...]] = {}


def register(rule: Rule) -> Rule:
    """Record a rule that some other part of lint reports (file checks, syntax errors)."""
    if rule.id in RULES:
        raise ValueError(f"rule id {rule.id} registered twice")
    RULES[rule.id] = rule
    return rule


def statement_rule(rule: Rule, *matches: Match) -> Callable[[StatementCheck], StatementCheck]:
    """Register `rule` with the function that checks one statement for it. The check is
    called only for the statements `matches` names, so it must find nothing in any other."""
    if not matches:
        raise ValueError(f"rule {rule.id} names no statement to check")
    node_types = tuple(m for m in matches if not isinstance(m, AlterTableType))
    commands = frozenset(m for m in matches if isinstance(m, AlterTableType))

    def decorate(check: StatementCheck) -> StatementCheck:
        STATEMENT_CHECKS.append(StatementRule(register(rule), check, node_types, commands))
        _CHECKS_BY_SHAPE.clear()
        return check

    return decorate


def checks_for(node: ast.Node) -> tuple[StatementRule, ...]:
    """The statement checks that can match `node`, in registration order."""
    shape = _shape(node)
    found = _CHECKS_BY_SHAPE.get(shape)
    if found is None:
        found = tuple(c for c in STATEMENT_CHECKS if c.matches(shape))
        _CHECKS_BY_SHAPE[shape] = found
    return found


def _shape(node: ast.Node) -> _Shape:
    if not isinstance(node, ast.AlterTableStmt):
        return type(node), _NO_COMMANDS
    commands = (c.subtype for c in node.cmds or () if isinstance(c, ast.AlterTableCmd))
    return type(node), frozenset(c for c in commands if c is not None)


def file_rule(rule: Rule) -> Callable[[FileCheck], FileCheck]:
    """Register `rule` with the function that checks a whole file for it."""

    def decorate(check: FileCheck) -> FileCheck:
        FILE_CHECKS.append((register(rule), check))
        return check

    return decorate
