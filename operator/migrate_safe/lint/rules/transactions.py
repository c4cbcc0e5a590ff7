"""Transactions and timeouts: what cannot run in a transaction, what must not share one, and
what a file needs when something other than the harness runs it."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ReindexObjectType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.facts import RelationName
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import file_rule, statement_rule
from migrate_safe.lint.sqlast import (
    ParsedStatement,
    added_column,
    alter_commands,
    column_constraints,
    option_enabled,
    relation_name,
    table_name,
)
from migrate_safe.statements import (
    ScriptBody,
    Statement,
    TransactionControl,
    classify_transactions,
    describe_refusal,
)

NO_TRANSACTION = "-- migrate-safe:no-transaction"


def _detaches_concurrently(node: ast.Node) -> bool:
    return any(
        isinstance(c.def_, ast.PartitionCmd) and c.def_.concurrent
        for c in alter_commands(node, AlterTableType.AT_DetachPartition)
    )


def _reindexes_concurrently(node: ast.Node) -> bool:
    return isinstance(node, ast.ReindexStmt) and option_enabled(node.params, "concurrently")


def transaction_forbidden(node: ast.Node, pg_version: int) -> str | None:
    """What in `node` PostgreSQL refuses inside a transaction block (SQLSTATE 25001)."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if _reindexes_concurrently(node):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and node.kind in (
        ReindexObjectType.REINDEX_OBJECT_SYSTEM,
        ReindexObjectType.REINDEX_OBJECT_DATABASE,
    ):
        return "REINDEX SYSTEM/DATABASE"
    if _detaches_concurrently(node):
        return "DETACH PARTITION CONCURRENTLY"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM"
    if isinstance(node, ast.AlterEnumStmt) and node.newVal and pg_version < 12:
        return f"ALTER TYPE … ADD VALUE (on PostgreSQL {pg_version})"
    forbidden_types = {
        ast.CreatedbStmt: "CREATE DATABASE",
        ast.DropdbStmt: "DROP DATABASE",
        ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
        ast.DropTableSpaceStmt: "DROP TABLESPACE",
        ast.AlterSystemStmt: "ALTER SYSTEM",
    }
    return forbidden_types.get(type(node))


@statement_rule(
    Rule(
        id="MS601",
        name="needs-no-transaction",
        severity=Severity.ERROR,
        family="transactions",
        summary="This statement cannot run inside a transaction, and this migration runs in one",
        safe_alternative=f"put the statement in a migration of its own that starts with "
        f"`{NO_TRANSACTION}`",
        lock="none: PostgreSQL refuses with SQLSTATE 25001 before doing anything",
        why="CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, DETACH PARTITION "
        "CONCURRENTLY, VACUUM, CREATE/DROP DATABASE and a few others refuse to run in a "
        "transaction block. The harness runs every migration in one transaction unless its "
        "leading comments say `-- migrate-safe:no-transaction`; then it runs each statement "
        "on its own, and records the migration dirty until all of them finished.",
        unsafe_example="CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);",
        safe_example=f"{NO_TRANSACTION}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS "
        "orders_created_at_idx ON orders (created_at);",
        unrunnable=True,
    ),
    ast.IndexStmt,
    ast.DropStmt,
    ast.ReindexStmt,
    AlterTableType.AT_DetachPartition,
    ast.VacuumStmt,
    ast.AlterEnumStmt,
    ast.CreatedbStmt,
    ast.DropdbStmt,
    ast.CreateTableSpaceStmt,
    ast.DropTableSpaceStmt,
    ast.AlterSystemStmt,
)
def needs_no_transaction(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    what = transaction_forbidden(statement.node, context.pg_version)
    if what is None or not context.in_transaction:
        return
    if context.in_transaction_block:
        yield Hit(f"{what} cannot run inside the BEGIN … COMMIT block it is in")
    else:
        yield Hit(
            f"{what} cannot run inside a transaction, and this migration runs in one "
            f"(it lacks `{NO_TRANSACTION}`)"
        )


def _needs_newer(node: ast.Node) -> tuple[str, int] | None:
    if _reindexes_concurrently(node):
        return "REINDEX CONCURRENTLY", 12
    if _detaches_concurrently(node):
        return "DETACH PARTITION CONCURRENTLY", 14
    for command in alter_commands(node, AlterTableType.AT_AddColumn):
        column = added_column(command)
        generated = column_constraints(column, ConstrType.CONSTR_GENERATED) if column else []
        if any(g.generated_kind == "v" for g in generated):
            return "virtual generated columns", 18
    return None


@statement_rule(
    Rule(
        id="MS602",
        name="needs-newer-postgres",
        severity=Severity.ERROR,
        family="transactions",
        summary="The statement uses a feature the target PostgreSQL version does not have",
        safe_alternative="use the older form the target supports, or raise --pg-version if the "
        "server is newer than lint assumed",
        lock="none: the statement fails",
        why="REINDEX CONCURRENTLY needs PostgreSQL 12, DETACH PARTITION CONCURRENTLY 14 and "
        "virtual generated columns 18; on older servers the migration fails with a syntax "
        "error. Lint checks against --pg-version (default 15).",
        unsafe_example="-- lint-fixture: pg-version=11\n"
        "-- migrate-safe:no-transaction\nREINDEX INDEX CONCURRENTLY orders_created_at_idx;",
        safe_example="-- lint-fixture: pg-version=12\n"
        "-- migrate-safe:no-transaction\nREINDEX INDEX CONCURRENTLY orders_created_at_idx;",
        unrunnable=True,
    ),
    ast.ReindexStmt,
    AlterTableType.AT_DetachPartition,
    AlterTableType.AT_AddColumn,
)
def needs_newer_postgres(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    needed = _needs_newer(statement.node)
    if needed is not None and context.pg_version < needed[1]:
        feature, version = needed
        yield Hit(f"{feature} needs PostgreSQL {version}; the target is {context.pg_version}")


def _transactions(statements: list[ParsedStatement], context: FileContext) -> ScriptBody | None:
    """The engine's own reading of the file's transaction control (statements.py), so lint
    and the engine can never disagree about what runs; None when no statement is transaction
    control (the engine finds none either), which spares parsing the file's statements again."""
    if not any(isinstance(s.node, ast.TransactionStmt) for s in statements):
        return None
    return classify_transactions(
        [Statement(s.sql, s.line) for s in statements], no_transaction=not context.transactional
    )


def _at(statements: list[ParsedStatement], control: TransactionControl) -> ParsedStatement:
    return next(s for s in statements if s.line == control.statement.line)


@file_rule(
    Rule(
        id="MS603",
        name="transaction-control",
        severity=Severity.ERROR,
        family="transactions",
        summary="COMMIT, ROLLBACK, SAVEPOINT or a BEGIN mid-file: transaction control that would "
        "end or split the harness's transaction (the harness refuses the file)",
        safe_alternative="remove it: the harness runs each migration in its own transaction, "
        "together with its ledger row (a plain BEGIN … COMMIT around the whole file is "
        "accepted); split work that must commit separately into migrations of its own",
        lock="n/a",
        why="A COMMIT in the file would commit part of the migration before the harness records "
        "it, so a later failure leaves a schema change the ledger does not know about, and what "
        "follows runs without lock_timeout; a ROLLBACK silently discards what came before. The "
        "harness therefore refuses such a file before anything runs (exit 5), in every path. In "
        "a no-transaction migration each statement runs on its own, so no transaction control "
        "belongs there at all.",
        unsafe_example="ALTER TABLE orders ADD COLUMN note text;\nCOMMIT;\n"
        "CREATE INDEX orders_note_idx ON orders (note);",
        safe_example="ALTER TABLE orders ADD COLUMN note text;",
        unrunnable=True,
    )
)
def transaction_control(
    statements: list[ParsedStatement], context: FileContext
) -> Iterator[tuple[ParsedStatement, Hit]]:
    body = _transactions(statements, context)
    for control in body.refused if body is not None else ():
        message = describe_refusal(control, no_transaction=not context.transactional)
        yield _at(statements, control), Hit(message)


@file_rule(
    Rule(
        id="MS607",
        name="transaction-wrapper",
        severity=Severity.INFO,
        family="transactions",
        summary="The file wraps itself in BEGIN … COMMIT; the harness drops the wrapper",
        safe_alternative="nothing to do: the harness runs the file in its own transaction; "
        "remove the wrapper if the file is only ever run by migrate-safe",
        lock="n/a",
        why="golang-migrate runs each file outside a transaction, so authors often wrap files "
        "in BEGIN … COMMIT themselves. A plain wrapper around the whole file means what the "
        "harness does anyway, so it is dropped (and said so) rather than refused.",
        unsafe_example="BEGIN;\nALTER TABLE orders ADD COLUMN note text;\nCOMMIT;",
        safe_example="ALTER TABLE orders ADD COLUMN note text;",
    )
)
def transaction_wrapper(
    statements: list[ParsedStatement], context: FileContext
) -> Iterator[tuple[ParsedStatement, Hit]]:
    body = _transactions(statements, context)
    wrapper = body.wrapper if body is not None else None
    if wrapper is not None:
        begin, commit = wrapper
        yield (
            _at(statements, begin),
            Hit(
                f"{begin.keyword} (line {begin.statement.line}) … {commit.keyword} (line "
                f"{commit.statement.line}) wraps the whole file: dropped, the harness runs the "
                "file in its own transaction"
            ),
        )


def takes_table_lock(statement: ParsedStatement, context: FileContext) -> bool:
    """Whether the statement locks a table that existed before this file (any lock level)."""
    node = statement.node
    targeted = (
        ast.AlterTableStmt,
        ast.IndexStmt,
        ast.RenameStmt,
        ast.ReindexStmt,
        ast.ClusterStmt,
        ast.CreateTrigStmt,
    )
    if isinstance(node, targeted):
        return not context.is_new_table(getattr(node, "relation", None))
    untargeted = (ast.DropStmt, ast.TruncateStmt, ast.VacuumStmt, ast.LockStmt, ast.AlterDomainStmt)
    return isinstance(node, untargeted)


@file_rule(
    Rule(
        id="MS604",
        name="missing-lock-timeout",
        severity=Severity.WARNING,
        family="transactions",
        summary="DDL without a lock_timeout set first (checked only with --no-harness-timeouts)",
        safe_alternative="start the file with `SET lock_timeout = '2s';` (and a "
        "statement_timeout), and retry the migration when it times out",
        lock="whatever the DDL needs; while it waits, every later query on the table queues "
        "behind it",
        why="A DDL statement waiting for its lock (behind one long transaction) blocks every "
        "query that arrives after it: the wait itself is the outage. The harness sets a short "
        "lock_timeout and retries on its own, so this rule is off by default; turn it on with "
        "--no-harness-timeouts when another tool may run the files.",
        unsafe_example="-- lint-fixture: no-harness-timeouts\n"
        "ALTER TABLE orders ADD COLUMN note text;",
        safe_example="-- lint-fixture: no-harness-timeouts\n"
        "SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN note text;",
    )
)
def missing_lock_timeout(
    statements: list[ParsedStatement], context: FileContext
) -> Iterator[tuple[ParsedStatement, Hit]]:
    if context.options.harness_timeouts:
        return
    for statement in statements:
        node = statement.node
        if isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
            return
        if takes_table_lock(statement, context):
            yield (
                statement,
                Hit("this statement takes a table lock and no lock_timeout is set before it"),
            )
            return


def _unbounded_dml(
    statement: ParsedStatement, context: FileContext
) -> tuple[str, RelationName] | None:
    """(`UPDATE t`, t) for an UPDATE or DELETE without WHERE on a table older than the file."""
    node = statement.node
    if not isinstance(node, ast.UpdateStmt | ast.DeleteStmt) or node.whereClause is not None:
        return None
    if node.relation is None or context.is_new_table(node.relation):
        return None
    verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE FROM"
    return f"{verb} {table_name(node.relation)}", relation_name(node.relation)


@file_rule(
    Rule(
        id="MS605",
        name="ddl-with-backfill",
        severity=Severity.WARNING,
        family="transactions",
        summary="A whole-table UPDATE/DELETE in the same transaction as DDL keeps the DDL's "
        "lock for the whole data change",
        safe_alternative="move the backfill to its own migration and run it in batches "
        "(UPDATE … WHERE id BETWEEN …), after the DDL committed",
        lock="the DDL's lock (often ACCESS EXCLUSIVE), held until the last row is changed",
        why="Locks are released only at commit, so an UPDATE of every row after an ALTER keeps "
        "the table blocked for the whole backfill, and the long transaction bloats the table.",
        unsafe_example="ALTER TABLE orders ADD COLUMN state text;\n"
        "UPDATE orders SET state = status;",
        safe_example="ALTER TABLE orders ADD COLUMN state text;\n"
        "-- next migration, in batches:\n"
        "UPDATE orders SET state = status WHERE id BETWEEN 1 AND 10000 AND state IS NULL;",
        bites=Bites.WITH_ROWS,
    )
)
def ddl_with_backfill(
    statements: list[ParsedStatement], context: FileContext
) -> Iterator[tuple[ParsedStatement, Hit]]:
    if not context.transactional:
        return
    # Most files have no whole-table UPDATE/DELETE: look for one before looking for DDL.
    backfills = [(s, found) for s in statements if (found := _unbounded_dml(s, context))]
    if not backfills:
        return
    ddl = next((s for s in statements if takes_table_lock(s, context)), None)
    if ddl is None:
        return
    for statement, (dml, table) in backfills:
        yield (
            statement,
            Hit(
                f"{dml} without WHERE runs in one transaction with the DDL on line {ddl.line}, "
                "which keeps its lock until every row is changed",
                subject=table,
            ),
        )


def _not_idempotent(node: ast.Node) -> str | None:
    guarded = {
        ast.IndexStmt: "if_not_exists",
        ast.CreateStmt: "if_not_exists",
        ast.DropStmt: "missing_ok",
    }
    for node_type, flag in guarded.items():
        if isinstance(node, node_type) and not getattr(node, flag):
            return "IF NOT EXISTS" if flag == "if_not_exists" else "IF EXISTS"
    for command in alter_commands(node, AlterTableType.AT_AddColumn):
        if not command.missing_ok:
            return "ADD COLUMN IF NOT EXISTS"
    for command in alter_commands(node, AlterTableType.AT_DropColumn):
        if not command.missing_ok:
            return "DROP COLUMN IF EXISTS"
    return None


@file_rule(
    Rule(
        id="MS606",
        name="not-rerunnable",
        severity=Severity.WARNING,
        family="transactions",
        summary="A no-transaction migration with several statements should be safe to re-run",
        safe_alternative="guard each statement with IF [NOT] EXISTS, or put one statement per "
        "migration",
        lock="n/a",
        why="Without a transaction, a failure half-way leaves the first statements applied "
        "(the harness marks the migration dirty). Re-running it then fails on the first "
        "statement that already happened unless every statement is guarded.",
        unsafe_example="-- migrate-safe:no-transaction\n"
        "CREATE INDEX CONCURRENTLY orders_a_idx ON orders (a);\n"
        "CREATE INDEX CONCURRENTLY orders_b_idx ON orders (b);",
        safe_example="-- migrate-safe:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a_idx ON orders (a);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_b_idx ON orders (b);",
    )
)
def not_rerunnable(
    statements: list[ParsedStatement], context: FileContext
) -> Iterator[tuple[ParsedStatement, Hit]]:
    if context.transactional or len(statements) < 2:
        return
    for statement in statements:
        guard = _not_idempotent(statement.node)
        if guard:
            yield statement, Hit(f"not re-runnable after a partial failure: add {guard}")
