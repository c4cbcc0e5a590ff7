"""Where a finding may be silenced, the reason lint reports for it, and the way out a refusal
names.

Three places, checked in this order: an `-- migrate-safe:allow=MS101` directive in the file's
leading comments (the whole file), the same comment on the statement's own lines or on the
line right above it (that statement only), and `[lint] disable` in the config file. A rule's
severity can also be lowered with `[lint.severity]`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pglast.parser import ParseError, scan

import migrate_safe.lint.rules  # noqa: F401  (importing the rules fills RULES)
from migrate_safe.lint.config import LintConfig
from migrate_safe.lint.judge import SIZE_LIMIT_NOTE
from migrate_safe.lint.model import Finding
from migrate_safe.lint.registry import RULES
from migrate_safe.scanner import Directives

_ALLOW_MARK = "migrate-safe:allow="
_ALLOW = re.compile(re.escape(_ALLOW_MARK) + r"([A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")
_COMMENT_TOKENS = {"SQL_COMMENT", "C_COMMENT"}


@dataclass(frozen=True)
class StatementComments:
    """Rule ids allowed by comments, by the line the comment is on."""

    by_line: dict[int, frozenset[str]] = field(default_factory=dict)

    def allowing(self, rule: str, first_line: int, last_line: int) -> int | None:
        """The line of a comment allowing `rule` for a statement spanning these lines."""
        for line in range(first_line - 1, last_line + 1):
            if rule in self.by_line.get(line, frozenset()):
                return line
        return None


def statement_comments(text: str) -> StatementComments:
    """Collect allow comments with the real scanner, so `--` inside a string is not one."""
    if _ALLOW_MARK not in text:  # most files allow nothing: no need to scan them
        return StatementComments()
    try:
        tokens = scan(text)
    except ParseError:  # unterminated literal: the syntax-error finding says so
        return StatementComments()
    found: dict[int, set[str]] = defaultdict(set)
    for token in tokens:
        if token.name not in _COMMENT_TOKENS:
            continue
        comment = text[token.start : token.end + 1]
        line = text.count("\n", 0, token.start) + 1
        for match in _ALLOW.finditer(comment):
            found[line].update(r.strip() for r in match[1].split(",") if r.strip())
    return StatementComments({line: frozenset(rules) for line, rules in found.items()})


def suppression_reason(
    rule: str,
    span: tuple[int, int] | None,
    directives: Directives,
    comments: StatementComments,
    config: LintConfig,
) -> str | None:
    """Why the finding is suppressed, or None; `span` is the statement's lines, if any."""
    if rule in directives.allow:
        return f"file directive migrate-safe:allow={rule}"
    line = comments.allowing(rule, *span) if span else None
    if line is not None:
        return f"statement comment migrate-safe:allow={rule} (line {line})"
    if rule in config.disabled:
        return f"config: [lint] disable in {config.origin}"
    return None


def way_out(blocking: Sequence[Finding], *, flags: str = "", directive: bool = True) -> str:
    """How to get past findings that refuse a run: the directive (unless the SQL that runs
    cannot be edited, e.g. a down stored in the ledger), the settings and `flags` (the
    command's own override, e.g. "--warn-on Lint"), in that order. A finding whose statement
    cannot run as written has no way past it but a fix."""
    unrunnable = sorted({f.rule for f in blocking if RULES[f.rule].unrunnable})
    if unrunnable:
        fixes = "; ".join(f"{rule}: {RULES[rule].safe_alternative}" for rule in unrunnable)
        return (
            f"fix the file ({fixes}): {', '.join(unrunnable)} cannot be suppressed, the "
            "statement cannot run as written"
        )
    rules = sorted({f.rule for f in blocking})
    options = [
        f'`[lint.severity] {rules[0]} = "warning"` (a line per rule) in migrate-safe.toml',
    ]
    if directive:
        options.insert(
            0,
            f"`-- migrate-safe:allow={','.join(rules)}` in the file's leading comments or on "
            "the line above the statement",
        )
    if any(SIZE_LIMIT_NOTE in f.message for f in blocking):
        options.append("higher `[lint] small_table_rows` / `small_table_bytes` there")
    if flags:
        options.append(flags)
    return "fix it (see each safe alternative: `migrate-safe plan`), or get past it with " + (
        ", or ".join(options)
    )
