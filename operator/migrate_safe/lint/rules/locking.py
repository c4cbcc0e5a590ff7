"""Maintenance commands and explicit locks that hold strong locks for a long time."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from migrate_safe.lint.context import FileContext
from migrate_safe.lint.model import Bites, Hit, Rule, Severity
from migrate_safe.lint.registry import statement_rule
from migrate_safe.lint.sqlast import (
    ParsedStatement,
    alter_commands,
    dotted,
    option_enabled,
    relation_name,
    table_name,
)

# LOCK TABLE modes by number (lockdefs.h); from SHARE (5) up, they block writes.
LOCK_MODES = {
    1: "ACCESS SHARE",
    2: "ROW SHARE",
    3: "ROW EXCLUSIVE",
    4: "SHARE UPDATE EXCLUSIVE",
    5: "SHARE",
    6: "SHARE ROW EXCLUSIVE",
    7: "EXCLUSIVE",
    8: "ACCESS EXCLUSIVE",
}
FIRST_WRITE_BLOCKING_MODE = 5


@statement_rule(
    Rule(
        id="MS501",
        name="vacuum-full-or-cluster",
        severity=Severity.ERROR,
        family="locking",
        summary="VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE",
        safe_alternative="pg_repack (or REPACK CONCURRENTLY where available), run outside "
        "migrations",
        lock="ACCESS EXCLUSIVE for the whole rewrite",
        why="Both copy the whole table and rebuild its indexes while nothing can read or write "
        "it; they also need up to twice the disk space.",
        unsafe_example="VACUUM FULL orders;",
        safe_example="-- run by the DBA outside the migration: pg_repack --table=orders",
        bites=Bites.WITH_ROWS,
    ),
    ast.VacuumStmt,
    ast.ClusterStmt,
)
def vacuum_full_or_cluster(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    if isinstance(node, ast.VacuumStmt) and option_enabled(node.options, "full"):
        tables = [r.relation for r in node.rels or () if r.relation is not None]
        for table in tables:
            yield Hit(
                f"VACUUM FULL {table_name(table)} rewrites under ACCESS EXCLUSIVE",
                subject=relation_name(table),
            )
        if not tables:
            yield Hit("VACUUM FULL (every table) rewrites under ACCESS EXCLUSIVE")
    elif isinstance(node, ast.ClusterStmt):
        if node.relation is None:
            yield Hit("CLUSTER (every clustered table) rewrites under ACCESS EXCLUSIVE")
        else:
            yield Hit(
                f"CLUSTER {table_name(node.relation)} rewrites under ACCESS EXCLUSIVE",
                subject=relation_name(node.relation),
            )


@statement_rule(
    Rule(
        id="MS502",
        name="lock-table",
        severity=Severity.WARNING,
        family="locking",
        summary="LOCK TABLE in a write-blocking mode holds the lock until the migration commits",
        safe_alternative="drop the explicit LOCK and let each statement take the lock it needs; "
        "if ordering demands it, lock in a weaker mode or keep the transaction tiny",
        lock="the requested mode (SHARE or stronger blocks writes) until commit",
        why="Everything after the LOCK in the same transaction runs while the table is blocked, "
        "and waiting for the lock queues all traffic behind it.",
        unsafe_example="LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;",
        safe_example="LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE;",
        bites=Bites.IF_IN_USE,
    ),
    ast.LockStmt,
)
def lock_table(statement: ParsedStatement, context: FileContext) -> Iterator[Hit]:
    node = statement.node
    mode = node.mode if isinstance(node, ast.LockStmt) else None
    if isinstance(node, ast.LockStmt) and mode is not None and mode >= FIRST_WRITE_BLOCKING_MODE:
        for table in node.relations or ():
            if isinstance(table, ast.RangeVar):
                yield Hit(
                    f"LOCK TABLE {table_name(table)} IN {LOCK_MODES[mode]} MODE blocks writes "
                    "until commit",
                    subject=relation_name(table),
                )


@statement_rule(
    Rule(
        id="MS503",
        name="detach-partition-without-concurrently",
        severity=Severity.WARNING,
        family="locking",
        summary="DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the "
        "partitioned table",
        safe_alternative="ALTER TABLE … DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+) in a "
        "migration marked `-- migrate-safe:no-transaction`",
        lock="ACCESS EXCLUSIVE on the parent table",
        why="Every query on the partitioned table (all partitions) waits. The concurrent form "
        "(PostgreSQL 14+, no default partition) takes SHARE UPDATE EXCLUSIVE; after an "
        "interruption, finish it with DETACH PARTITION … FINALIZE.",
        unsafe_example="ALTER TABLE events DETACH PARTITION events_2023;",
        safe_example="-- migrate-safe:no-transaction\n"
        "ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;",
        bites=Bites.IF_IN_USE,
    ),
    AlterTableType.AT_DetachPartition,
)
def detach_partition_without_concurrently(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    node = statement.node
    for command in alter_commands(node, AlterTableType.AT_DetachPartition):
        detach = command.def_
        if isinstance(detach, ast.PartitionCmd) and not detach.concurrent:
            assert isinstance(node, ast.AlterTableStmt)  # alter_commands only yields for these
            message = (
                f"DETACH PARTITION {table_name(detach.name)} blocks every query on "
                f"{table_name(node.relation)}"
            )
            parent = relation_name(node.relation) if node.relation else None
            if context.pg_version >= 14:
                yield Hit(message, subject=parent)
            else:
                yield Hit(
                    message + f" (PostgreSQL {context.pg_version} has no concurrent detach)",
                    "detach in a maintenance window, or upgrade to PostgreSQL 14+",
                    subject=parent,
                )


@statement_rule(
    Rule(
        id="MS504",
        name="domain-check-without-not-valid",
        severity=Severity.WARNING,
        family="locking",
        summary="ALTER DOMAIN … ADD CONSTRAINT without NOT VALID checks every column that uses "
        "the domain",
        safe_alternative="ALTER DOMAIN … ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT "
        "in a later migration; or use table CHECK constraints instead of domain checks",
        lock="locks on every table with a column of the domain while they are scanned",
        why="The new check is verified against every stored value of every column of that "
        "type, across tables, in one statement.",
        unsafe_example="ALTER DOMAIN positive_cents ADD CONSTRAINT positive CHECK (VALUE > 0);",
        safe_example="ALTER DOMAIN positive_cents ADD CONSTRAINT positive "
        "CHECK (VALUE > 0) NOT VALID;",
    ),
    ast.AlterDomainStmt,
)
def domain_check_without_not_valid(
    statement: ParsedStatement, context: FileContext
) -> Iterator[Hit]:
    node = statement.node
    if not isinstance(node, ast.AlterDomainStmt) or node.subtype != "C":
        return
    constraint = node.def_
    if not isinstance(constraint, ast.Constraint) or constraint.skip_validation:
        return
    if constraint.contype == ConstrType.CONSTR_CHECK:
        yield Hit(
            f"ALTER DOMAIN {dotted(node.typeName or ())} ADD CHECK scans every column of that type"
        )
