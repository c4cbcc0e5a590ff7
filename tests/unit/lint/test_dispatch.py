"""Each statement meets only the checks registered for its node type (and, for ALTER TABLE,
its sub-commands). Lint reports the same findings as calling every check on every statement
only if no check finds anything in a statement it is not dispatched to: checked here on every
fixture, example and rule example, both directions, old and new servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_safe.lint import RULES
from migrate_safe.lint.context import FileContext, LintOptions, SchemaState, observe
from migrate_safe.lint.model import Rule, Severity
from migrate_safe.lint.registry import STATEMENT_CHECKS, checks_for, statement_rule
from migrate_safe.lint.sqlast import parse_script
from migrate_safe.scanner import read_directives
from migrate_safe.statements import SqlSyntaxError

ROOT = Path(__file__).resolve().parents[3]
SQL_FILES = sorted((ROOT / "tests" / "lint_fixtures").rglob("*.sql")) + sorted(
    (ROOT / "examples" / "migrations").glob("*.sql")
)
# Statements with several sub-commands, and kinds no fixture has on its own.
MIXED = """
ALTER TABLE orders ADD COLUMN a int NOT NULL REFERENCES users (id), DROP COLUMN b,
    ALTER COLUMN c TYPE bigint, ALTER COLUMN d SET NOT NULL, ALTER COLUMN e DROP NOT NULL,
    ADD CONSTRAINT f CHECK (g IS NOT NULL), VALIDATE CONSTRAINT h, DROP CONSTRAINT i;
ALTER TABLE orders ADD COLUMN id serial PRIMARY KEY, ADD UNIQUE (x),
    ADD EXCLUDE USING gist (r WITH &&);
ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;
ALTER TYPE address ADD ATTRIBUTE zip text;
ALTER TABLE orders SET (fillfactor = 70), ALTER COLUMN note SET DEFAULT 'x';
CREATE TABLE t (id int PRIMARY KEY, at timestamp, doc json, name varchar(20));
DROP TABLE IF EXISTS a, b CASCADE;
DROP SCHEMA s; DROP DATABASE d; TRUNCATE a CASCADE; VACUUM FULL a; CLUSTER a;
LOCK TABLE a IN ACCESS EXCLUSIVE MODE; REINDEX DATABASE d; ALTER SYSTEM SET work_mem = '1MB';
ALTER TYPE mood ADD VALUE 'ok'; CREATE TABLESPACE ts LOCATION '/x'; DROP TABLESPACE ts;
ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0);
ALTER TABLE a ADD COLUMN v int GENERATED ALWAYS AS (w * 2) VIRTUAL;
ALTER TABLE a RENAME COLUMN x TO y; ALTER TABLE a RENAME TO b;
ALTER TABLE a ALTER COLUMN b TYPE varchar(9), ALTER COLUMN c TYPE timestamp,
    ALTER COLUMN d TYPE json, ALTER COLUMN e TYPE serial;
"""


def texts() -> list[tuple[str, str, str]]:
    """(name, SQL, direction) of everything lint is known to meet."""
    found = [
        (path.name, path.read_text(), "down" if ".down." in path.name else "up")
        for path in SQL_FILES
    ]
    for rule in RULES.values():
        found.append((f"{rule.id} unsafe example", rule.unsafe_example, "up"))
        found.append((f"{rule.id} safe example", rule.safe_example, "up"))
    return [*found, ("mixed statements", MIXED, "up"), ("mixed statements", MIXED, "down")]


@pytest.mark.parametrize("pg_version", [10, 18])
def test_no_check_matches_a_statement_it_is_not_dispatched_to(pg_version: int) -> None:
    checked = 0
    for name, text, direction in texts():
        try:
            statements = parse_script(text)
        except SqlSyntaxError:
            continue  # the syntax-error fixtures and the file-name examples
        directives, _ = read_directives(text)
        options = LintOptions(pg_version, harness_timeouts=False)
        context = FileContext(name, direction, directives, options, SchemaState())
        for statement in statements:
            dispatched = checks_for(statement.node)
            for registered in STATEMENT_CHECKS:
                if registered in dispatched:
                    continue
                hits = list(registered.check(statement, context))
                assert not hits, f"{registered.rule.id} matches {statement.sql!r} in {name}"
                checked += 1
            observe(statement, context)
    assert checked > 1000  # the corpus really was read


def test_a_statement_rule_must_name_what_it_checks() -> None:
    rule = Rule("MS999", "nothing", Severity.INFO, "test", "", "", "", "", "", "")
    with pytest.raises(ValueError, match="MS999 names no statement"):
        statement_rule(rule)
