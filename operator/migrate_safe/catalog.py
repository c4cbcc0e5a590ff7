"""What the catalogs say: which schemas hold the application's objects, and the facts lint
needs about the relations the pending files name (does each exist, what is it, how big is the
table behind it), read in one query before anything runs.

Lint judges a finding that only bites on a table with rows (an index build, a rewrite, a
scan) by these facts, so a directory applied to an empty database is not refused for indexing
the tables it has just created, and a refusal on a big table says how big.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from migrate_safe.lint import RelationFacts, RelationName, TableFacts, TableSize
from migrate_safe.session import local_timeouts

# How the queries here name a schema: pg_namespace aliased as n.
NAMESPACE = sql.SQL("n.nspname")


def application_schema(
    namespace: sql.Composable = NAMESPACE, *, ledger: str | None = None
) -> sql.Composed:
    """WHERE fragment: the schema named by `namespace` (a pg_namespace.nspname expression)
    holds the application's objects. The one definition every check, fingerprint, lock report
    and backup uses: not a system schema (the catalogs, information_schema, and every `pg_`
    schema: PostgreSQL reserves the prefix for TOAST and temporary schemas), and, when `ledger`
    is given, not the ledger's own schema either.

    Which callers leave the ledger out, on purpose: the fingerprint (the ledger changes with
    every run, the schema it describes does not) and the rehearsal's lock report (the ledger's
    own writes are no lock the application meets). Health checks, sizes and backups count it:
    it is data of the database like any other."""
    condition = sql.SQL(
        "{namespace} NOT IN ('pg_catalog', 'information_schema') AND {namespace} !~ '^pg_'"
    ).format(namespace=namespace)
    if ledger is None:
        return condition
    return condition + sql.SQL(" AND {namespace} <> {ledger}").format(
        namespace=namespace, ledger=sql.Literal(ledger)
    )


# The size functions take ACCESS SHARE on each table for an instant, so they would queue
# behind a session that holds or awaits ACCESS EXCLUSIVE: such tables are not measured, and a
# lock taken between the check and the measure makes the query give up after this long.
SIZE_LOCK_TIMEOUT = 1.0

KINDS = {
    "r": "table",
    "p": "partitioned table",
    "m": "materialized view",
    "i": "index",
    "I": "partitioned index",
    "v": "view",
    "S": "sequence",
    "f": "foreign table",
    "c": "composite type",
    "t": "TOAST table",
}

# Each looked-up name resolved as the session would resolve it (search_path for bare names),
# with its kind, the table whose rows matter for it (an index's table, else itself) and that
# table's size summed over its partitions. The row estimate scales reltuples/relpages to the
# current number of pages, as the planner does; a table with pages but no usable statistics
# (never analysed, or analysed while empty) gets the most tuples its pages can hold
# (MaxHeapTuplesPerPage), so it is never judged smaller than it is. Views, foreign tables
# and sequences have no size (NULLs), nor has a table another session locks exclusively
# (`locked`): measuring it would wait for that session.
_FACTS = sql.SQL("""
WITH wanted AS (
    SELECT w.schema_name, w.relation_name,
           to_regclass(CASE WHEN w.schema_name IS NULL THEN quote_ident(w.relation_name)
                            ELSE quote_ident(w.schema_name) || '.' || quote_ident(w.relation_name)
                       END) AS relation
    FROM unnest({schemas}::text[], {names}::text[]) AS w(schema_name, relation_name)
), found AS (
    SELECT wanted.schema_name, wanted.relation_name, c.relkind,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
           coalesce(i.indrelid, c.oid) AS table_oid
    FROM wanted
    JOIN pg_class c ON c.oid = wanted.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
), parts AS (
    SELECT t.oid AS table_oid, leaf.oid AS leaf_oid, leaf.reltuples, leaf.relpages,
           EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'relation' AND l.relation = leaf.oid
                     AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
                     AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())) AS locked
    FROM pg_class t
    JOIN pg_class leaf ON leaf.oid = t.oid
        OR (t.relkind = 'p'
            AND leaf.oid IN (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf))
    WHERE t.oid IN (SELECT table_oid FROM found) AND t.relkind IN ('r', 'p', 'm')
), leaves AS (
    SELECT table_oid, reltuples, relpages, locked,
           CASE WHEN NOT locked THEN pg_relation_size(leaf_oid) END AS heap_bytes,
           CASE WHEN NOT locked THEN pg_total_relation_size(leaf_oid) END AS total_bytes
    FROM parts
), sizes AS (
    SELECT table_oid, bool_or(locked) AS locked,
           sum(CASE WHEN heap_bytes = 0 THEN 0
                    WHEN reltuples >= 0 AND relpages > 0
                    THEN reltuples / relpages * (heap_bytes / {block_size})
                    ELSE heap_bytes / {block_size} * {max_tuples_per_page}
               END)::bigint AS estimated_rows,
           bool_or(heap_bytes > 0 AND NOT (reltuples >= 0 AND relpages > 0)) AS rows_from_size,
           sum(heap_bytes)::bigint AS heap_bytes,
           sum(total_bytes)::bigint AS total_bytes
    FROM leaves GROUP BY table_oid
)
SELECT found.schema_name, found.relation_name, found.relkind::text AS relkind,
       found.qualified, quote_ident(tn.nspname) || '.' || quote_ident(t.relname) AS table_qualified,
       coalesce(sizes.locked, false) AS locked,
       CASE WHEN NOT sizes.locked THEN sizes.estimated_rows END AS estimated_rows,
       sizes.rows_from_size,
       CASE WHEN NOT sizes.locked THEN sizes.heap_bytes END AS heap_bytes,
       sizes.total_bytes
FROM found
JOIN pg_class t ON t.oid = found.table_oid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN sizes ON sizes.table_oid = found.table_oid
""")


@dataclass(frozen=True)
class _Row:
    schema_name: str | None
    relation_name: str
    relkind: str
    qualified: str
    table_qualified: str
    locked: bool
    estimated_rows: int | None
    rows_from_size: bool | None
    heap_bytes: int | None
    total_bytes: int | None

    def facts(self) -> RelationFacts:
        size = None
        if self.estimated_rows is not None and self.heap_bytes is not None:
            size = TableSize(
                self.estimated_rows,
                bool(self.rows_from_size),
                self.heap_bytes,
                self.total_bytes or 0,
            )
        kind = KINDS.get(self.relkind, f"relation of kind {self.relkind}")
        return RelationFacts(self.qualified, kind, self.table_qualified, size, self.locked)


def table_facts(conn: psycopg.Connection[Any], names: Collection[RelationName]) -> TableFacts:
    """What the catalog says about `names` now; every name gets an answer (None: absent).
    When a size lookup meets a lock, no facts are known and the note says why."""
    wanted = sorted(names, key=lambda name: name.sort_key)
    if not wanted:
        return TableFacts()
    query = _FACTS.format(
        schemas=sql.Placeholder("schemas"),
        names=sql.Placeholder("names"),
        block_size=sql.SQL("current_setting('block_size')::bigint"),
        # PostgreSQL's MaxHeapTuplesPerPage: (page - page header) / (tuple header + line
        # pointer), 291 on 8 KiB pages.
        max_tuples_per_page=sql.SQL("((current_setting('block_size')::bigint - 24) / 28)"),
    )
    params = {"schemas": [n.schema for n in wanted], "names": [n.name for n in wanted]}
    try:
        with (
            local_timeouts(conn, lock_timeout=SIZE_LOCK_TIMEOUT),
            conn.cursor(row_factory=class_row(_Row)) as cursor,
        ):
            rows = cursor.execute(query, params).fetchall()
    except psycopg.errors.LockNotAvailable:
        return TableFacts(
            note=f"table sizes unknown: a table stayed locked for {SIZE_LOCK_TIMEOUT:g}s"
        )
    found: dict[RelationName, RelationFacts | None] = dict.fromkeys(wanted)
    for row in rows:
        found[RelationName(row.schema_name, row.relation_name)] = row.facts()
    return TableFacts(found)
