"""Lint entry points: one SQL text, a list of loaded migrations, or a directory on disk.

Lint never connects to a database: the target version comes from the caller, and what it knows
about the schema comes from the migrations it reads (plus any applied history it is given) and,
when the caller ran against a database, the catalog facts it passes in (`TableFacts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import migrate_safe.lint.rules  # noqa: F401  (importing the rules fills the registry)
from migrate_safe.lint.config import LintConfig
from migrate_safe.lint.context import FileContext, LintOptions, SchemaState, observe
from migrate_safe.lint.facts import TableFacts
from migrate_safe.lint.judge import Verdict, judge
from migrate_safe.lint.model import Finding, Hit, Rule, Severity
from migrate_safe.lint.registry import FILE_CHECKS, checks_for
from migrate_safe.lint.rules import files
from migrate_safe.lint.rules.files import file_finding, problem_finding
from migrate_safe.lint.sqlast import ParsedStatement, parse_script
from migrate_safe.lint.suppress import StatementComments, statement_comments, suppression_reason
from migrate_safe.scanner import Directives, Migration, Script, read_directives, scan_directory
from migrate_safe.statements import SqlSyntaxError


@dataclass(frozen=True)
class LintTarget:
    """One SQL file to lint: where it is, its text and directives, and which way it runs."""

    path: str
    text: str
    directives: Directives
    direction: str = "up"


@dataclass(frozen=True)
class _Located:
    """A finding before policy: the lines of its statement, for statement-level allows, and
    whether the facts show it does not bite here."""

    finding: Finding
    span: tuple[int, int] | None
    harmless: bool = False


def lint_sql(
    text: str,
    *,
    origin: str = "<sql>",
    direction: str = "up",
    options: LintOptions | None = None,
    config: LintConfig | None = None,
) -> list[Finding]:
    """Lint one SQL text as a migration file (its leading directives apply)."""
    config = config or LintConfig()
    directives, problems = read_directives(text)
    target = LintTarget(origin, text, directives, direction)
    findings = [
        _with_policy(
            _Located(file_finding(files.BAD_DIRECTIVE, origin, problem.detail, problem.line), None),
            directives,
            config,
            StatementComments(),
        )
        for problem in problems
    ]
    findings += _lint_target(target, options or LintOptions(), config, SchemaState())
    return sort_findings(findings)


def lint_migrations(
    migrations: Sequence[Migration],
    *,
    pg_version: int = LintOptions.pg_version,
    config: LintConfig | None = None,
    harness_timeouts: bool = True,
    history: Sequence[Migration] = (),
    include_down: bool = True,
    tables: TableFacts | None = None,
) -> list[Finding]:
    """Findings for pending migrations, in version order, each up file then its down file.

    `history`: migrations already applied, read only to learn the schema (column types,
    validated NOT NULL checks), never reported on.
    `tables`: the catalog facts of the database the migrations will run on, read before the
    run; with them, findings that only bite on tables with rows are judged (see judge.py).
    """
    options = LintOptions(pg_version, harness_timeouts, tables)
    config = config or LintConfig()
    schema = SchemaState()
    for applied in history:
        _lint_target(_target(applied.up, "up"), options, config, schema)
    schema.begin_run()
    findings: list[Finding] = []
    previous: Migration | None = None
    for migration in migrations:
        if previous is not None and migration.version <= previous.version:
            findings.append(_out_of_order(migration, previous))
        findings += _lint_target(_target(migration.up, "up"), options, config, schema)
        if include_down and migration.down is not None:
            down = _target(migration.down, "down")
            findings += _lint_target(down, options, config, schema.for_down())
        previous = migration
    return sort_findings(findings)


def lint_down_scripts(
    scripts: Sequence[Script],
    *,
    pg_version: int = LintOptions.pg_version,
    config: LintConfig | None = None,
    tables: TableFacts | None = None,
) -> list[Finding]:
    """Findings for the down scripts a rollback runs, in the order it runs them (newest
    first), each seeing what the ones before it changed."""
    options = LintOptions(pg_version, True, tables)
    config = config or LintConfig()
    schema = SchemaState()
    findings: list[Finding] = []
    for script in scripts:
        findings += _lint_target(_target(script, "down"), options, config, schema)
    return sort_findings(findings)


def lint_directory(
    directory: Path,
    *,
    pg_version: int = LintOptions.pg_version,
    config: LintConfig | None = None,
    harness_timeouts: bool = True,
) -> list[Finding]:
    """Findings for every file of a migrations directory, including the problems that make
    the loader refuse it (names, pairs, duplicate versions, bytes, directives)."""
    options = LintOptions(pg_version, harness_timeouts)
    config = config or LintConfig()
    scan = scan_directory(directory)
    directives = {e.path: e.script.directives for e in scan.files if e.script is not None}
    findings = [
        _with_policy(
            _Located(problem_finding(problem), None),
            directives.get(problem.path, Directives()),
            config,
            StatementComments(),
        )
        for problem in scan.problems
    ]
    schema = SchemaState()
    for entry in scan.files:
        if entry.script is None:
            continue
        script = entry.script
        target = LintTarget(script.origin, script.text, script.directives, entry.direction)
        # A down migration runs against the schema its up migration left; it changes nothing
        # that later up migrations see.
        walked = schema if entry.direction == "up" else schema.for_down()
        findings += _lint_target(target, options, config, walked)
    return sort_findings(findings)


def exit_code(findings: Sequence[Finding], *, strict: bool = False) -> int:
    """0 when clean; 1 when an unsuppressed error remains (or a warning, under --strict)."""
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return 1 if any(f.active and f.severity in failing for f in findings) else 0


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule))


# --- one file ----------------------------------------------------------------------------


def _lint_target(
    target: LintTarget, options: LintOptions, config: LintConfig, schema: SchemaState
) -> list[Finding]:
    located = _raw_findings(target, options, config, schema)
    comments = statement_comments(target.text) if located else StatementComments()
    return [_with_policy(item, target.directives, config, comments) for item in located]


def _raw_findings(
    target: LintTarget, options: LintOptions, config: LintConfig, schema: SchemaState
) -> list[_Located]:
    try:
        statements = parse_script(target.text)
    except SqlSyntaxError as error:
        line, column = _clamp(target.text, error.line, error.column)
        finding = Finding(
            files.SYNTAX_ERROR.id,
            files.SYNTAX_ERROR.severity,
            target.path,
            line,
            column,
            f"syntax error: {error.message}",
            files.SYNTAX_ERROR.safe_alternative,
        )
        return [_Located(finding, None)]
    if not statements:
        message = f"{target.direction} migration has no SQL statement"
        return [_Located(file_finding(files.EMPTY_FILE, target.path, message), None)]
    context = FileContext(target.path, target.direction, target.directives, options, schema)
    located: list[_Located] = []

    def locate(rule: Rule, hit: Hit, statement: ParsedStatement) -> _Located:
        return _locate(rule, hit, statement, target, judge(rule, hit, context, config.limits))

    for statement in statements:
        for checked in checks_for(statement.node):
            for hit in checked.check(statement, context):
                located.append(locate(checked.rule, hit, statement))
        observe(statement, context)
    # File checks run after the walk, so they judge against the file's end state: a table
    # created anywhere in it counts as new (used before its CREATE, the file fails anyway).
    for rule, file_check in FILE_CHECKS:
        located += [locate(rule, hit, at) for at, hit in file_check(statements, context)]
    return located


def _locate(
    rule: Rule, hit: Hit, statement: ParsedStatement, target: LintTarget, verdict: Verdict
) -> _Located:
    finding = Finding(
        rule.id,
        rule.severity,
        target.path,
        statement.line,
        statement.column,
        verdict.message(hit.message),
        hit.safe_alternative or rule.safe_alternative,
    )
    return _Located(finding, (statement.line, statement.end_line), verdict.harmless)


def _with_policy(
    item: _Located, directives: Directives, config: LintConfig, comments: StatementComments
) -> Finding:
    finding = item.finding
    severity = config.severity.get(finding.rule, finding.severity)
    if item.harmless:
        severity = Severity.INFO
    reason = suppression_reason(finding.rule, item.span, directives, comments, config)
    if severity == finding.severity and reason is None:
        return finding  # the usual case: nothing to change
    return replace(finding, severity=severity, suppressed_by=reason)


def _clamp(text: str, line: int, column: int) -> tuple[int, int]:
    """Keep a parser position on a real line (an error at end of text points past it)."""
    last = max(1, len(text.splitlines()))
    return min(max(1, line), last), max(1, column) if line <= last else 1


def _target(script: Script, direction: str) -> LintTarget:
    return LintTarget(script.origin, script.text, script.directives, direction)


def _out_of_order(migration: Migration, previous: Migration) -> Finding:
    return file_finding(
        files.VERSION_ORDER,
        migration.up.origin,
        f"version {migration.version} comes after version {previous.version} in the pending "
        "list: it was added below a migration that already exists",
    )
