"""File-level rules: names, pairs, versions, directives, syntax. The directory scanner and the
runner report them; they live in the registry so docs, SARIF and config know them."""

from __future__ import annotations

from pathlib import Path

from migrate_safe.lint.model import Finding, Rule, Severity
from migrate_safe.lint.registry import register
from migrate_safe.scanner import Problem, ProblemKind

SYNTAX_ERROR = register(
    Rule(
        id="MS701",
        name="syntax-error",
        severity=Severity.ERROR,
        family="files",
        summary="PostgreSQL's parser rejects the file",
        safe_alternative="fix the SQL at the reported line and column",
        lock="n/a",
        why="The migration would fail on its first run. Lint parses with libpg_query, the "
        "server's own grammar, so what it rejects the server rejects too.",
        unsafe_example="ALTER TABLE orders ADD COLUMN note text DEFALT '';",
        safe_example="ALTER TABLE orders ADD COLUMN note text DEFAULT '';",
        unrunnable=True,
    )
)
BAD_FILE_NAME = register(
    Rule(
        id="MS702",
        name="bad-file-name",
        severity=Severity.ERROR,
        family="files",
        summary="A .sql file whose name is not NNN_name.up.sql or NNN_name.down.sql",
        safe_alternative="rename it to VERSION_name.up.sql / VERSION_name.down.sql (version: "
        "a positive integer or a timestamp)",
        lock="n/a",
        why="The harness refuses a directory with such files, so the deploy fails before any "
        "migration runs.",
        unsafe_example="add_orders.sql",
        safe_example="009_add_orders.up.sql + 009_add_orders.down.sql",
    )
)
MISSING_DOWN = register(
    Rule(
        id="MS703",
        name="missing-down",
        severity=Severity.ERROR,
        family="files",
        summary="An up migration without a down migration cannot be rolled back",
        safe_alternative="add NNN_name.down.sql that undoes the up migration (or run with "
        "--allow-missing-down, which makes this a warning)",
        lock="n/a",
        why="A GitOps revert or `migrate-safe rollback` needs the down SQL; the harness refuses "
        "the directory unless --allow-missing-down is given.",
        unsafe_example="009_add_orders_note.up.sql (alone)",
        safe_example="009_add_orders_note.up.sql + 009_add_orders_note.down.sql",
    )
)
ORPHAN_DOWN = register(
    Rule(
        id="MS704",
        name="down-without-up",
        severity=Severity.ERROR,
        family="files",
        summary="A down migration without its up migration",
        safe_alternative="restore the up migration or delete the stray down file",
        lock="n/a",
        why="The harness refuses the directory: the version has nothing to apply.",
        unsafe_example="009_add_orders_note.down.sql (alone)",
        safe_example="009_add_orders_note.up.sql + 009_add_orders_note.down.sql",
    )
)
DUPLICATE_VERSION = register(
    Rule(
        id="MS705",
        name="duplicate-version",
        severity=Severity.ERROR,
        family="files",
        summary="Two migrations share a version number",
        safe_alternative="give the newer migration the next free version",
        lock="n/a",
        why="The ledger keys on the version, so one of the two would never run. Leading zeros "
        "are ignored: 9 and 009 are the same version. Usually two branches merged.",
        unsafe_example="009_add_note.up.sql + 009_add_flag.up.sql",
        safe_example="009_add_note.up.sql + 010_add_flag.up.sql",
    )
)
NAME_MISMATCH = register(
    Rule(
        id="MS706",
        name="up-down-name-mismatch",
        severity=Severity.WARNING,
        family="files",
        summary="The down migration's name differs from its up migration's",
        safe_alternative="rename the down file to match the up file",
        lock="n/a",
        why="Pairs are matched by version alone, as golang-migrate does, so the files still run "
        "together; but a mismatch often means the down file belongs to another change: check "
        "that it undoes this up.",
        unsafe_example="009_add_note.up.sql + 009_add_notes.down.sql",
        safe_example="009_add_note.up.sql + 009_add_note.down.sql",
    )
)
EMPTY_FILE = register(
    Rule(
        id="MS707",
        name="empty-migration",
        severity=Severity.WARNING,
        family="files",
        summary="The migration has no SQL statement",
        safe_alternative="add the statements, or a comment-only file on purpose with "
        "`-- migrate-safe:allow=MS707`",
        lock="n/a",
        why="An empty up migration is usually a file saved before it was written; an empty "
        "down migration means the rollback silently does nothing.",
        unsafe_example="-- TODO",
        safe_example="-- migrate-safe:allow=MS707\n-- nothing to undo: the up migration only "
        "added a comment",
    )
)
VERSION_ORDER = register(
    Rule(
        id="MS708",
        name="version-order",
        severity=Severity.WARNING,
        family="files",
        summary="Versions are not in increasing order, or file names sort differently from "
        "their versions",
        safe_alternative="use zero-padded versions of one width (or timestamps throughout) "
        "so that names sort like versions",
        lock="n/a",
        why="The harness applies by numeric version, but people and some tools read files in "
        "name order: with 9_x and 10_y the listing shows 10 first. A pending list out of order "
        "means a migration was added below ones already applied.",
        unsafe_example="9_add_note.up.sql, 10_add_flag.up.sql",
        safe_example="009_add_note.up.sql, 010_add_flag.up.sql",
    )
)
BAD_DIRECTIVE = register(
    Rule(
        id="MS709",
        name="unreadable-file",
        severity=Severity.ERROR,
        family="files",
        summary="The file cannot be read: not UTF-8, or a malformed migrate-safe directive",
        safe_alternative="save the file as UTF-8; use only the directives no-transaction, "
        "lock-timeout=…, statement-timeout=…, allow=…",
        lock="n/a",
        why="The harness refuses such a file, so the deploy fails before any migration runs.",
        unsafe_example="-- migrate-safe:no-transactions\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a_idx ON orders (a);",
        safe_example="-- migrate-safe:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a_idx ON orders (a);",
    )
)


# The rule under which lint reports each problem the directory scanner finds.
RULE_OF_PROBLEM = {
    ProblemKind.BAD_NAME: BAD_FILE_NAME,
    ProblemKind.DUPLICATE_VERSION: DUPLICATE_VERSION,
    ProblemKind.ORPHAN_DOWN: ORPHAN_DOWN,
    ProblemKind.MISSING_DOWN: MISSING_DOWN,
    ProblemKind.NAME_MISMATCH: NAME_MISMATCH,
    ProblemKind.VERSION_ORDER: VERSION_ORDER,
    ProblemKind.UNREADABLE: BAD_DIRECTIVE,
    ProblemKind.BAD_DIRECTIVE: BAD_DIRECTIVE,
}


def file_finding(rule: Rule, path: Path | str, message: str, line: int = 1) -> Finding:
    return Finding(rule.id, rule.severity, str(path), line, 1, message, rule.safe_alternative)


def problem_finding(problem: Problem) -> Finding:
    rule = RULE_OF_PROBLEM[problem.kind]
    return file_finding(rule, problem.path, problem.detail, problem.line or 1)
