"""Findings judged against catalog facts (hand-built here; the real query is tested in
tests/db/test_lint_database.py): new, empty, small and absent tables make the findings that
only bite on tables with rows info, with the reason; without facts the message says when the
finding bites."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate_safe.errors import ConfigError
from migrate_safe.lint import (
    RULES,
    Bites,
    Finding,
    LintConfig,
    LintOptions,
    RelationFacts,
    RelationName,
    Severity,
    TableFacts,
    TableSize,
    lint_config_from_table,
    lint_down_scripts,
    lint_migrations,
    lint_sql,
    refusal,
    relations_to_look_up,
)
from migrate_safe.scanner import Migration
from migrate_safe.source import script_from_text

ORDERS = RelationName(None, "orders")
BIG = TableSize(estimated_rows=2_000_000, rows_from_size=False, heap_bytes=2**30, total_bytes=2**31)
SMALL = TableSize(estimated_rows=120, rows_from_size=False, heap_bytes=16_384, total_bytes=49_152)
EMPTY = TableSize(estimated_rows=0, rows_from_size=False, heap_bytes=0, total_bytes=8_192)


def table(name: str, size: TableSize | None, kind: str = "table") -> RelationFacts:
    return RelationFacts(f"public.{name}", kind, f"public.{name}", size)


def facts(**tables: RelationFacts | None) -> TableFacts:
    return TableFacts({RelationName(None, name): found for name, found in tables.items()})


def judged(text: str, tables: TableFacts | None, config: LintConfig | None = None) -> Finding:
    [finding] = [
        f
        for f in lint_sql(
            text, origin="002_x.up.sql", options=LintOptions(tables=tables), config=config
        )
        if f.active
    ]
    return finding


def migration(version: int, name: str, up: str, down: str | None = None) -> Migration:
    origin = f"{version:03}_{name}"
    return Migration(
        version,
        name,
        script_from_text(up, f"{origin}.up.sql"),
        script_from_text(down, f"{origin}.down.sql") if down is not None else None,
    )


# --- with rows: index builds, rewrites, scans ------------------------------------------------


def test_index_on_a_table_an_earlier_pending_migration_creates_is_info_with_the_reason() -> None:
    pending = [
        migration(1, "init", "CREATE TABLE orders (id bigint, created_at timestamptz);"),
        migration(2, "idx", "CREATE INDEX orders_created_at_idx ON orders (created_at);"),
    ]
    [finding] = lint_migrations(pending, tables=facts(orders=None))
    assert (finding.rule, finding.severity) == ("MS101", Severity.INFO)
    assert finding.message.endswith(
        "table orders is created by 001_init.up.sql in this run: it is empty and unused"
    )


def test_without_a_database_the_finding_stays_an_error_and_says_when_it_bites() -> None:
    pending = [
        migration(1, "init", "CREATE TABLE orders (id bigint);"),
        migration(2, "idx", "CREATE INDEX ON orders (id);"),
    ]
    [finding] = lint_migrations(pending)
    assert finding.severity == Severity.ERROR
    assert "on a new or empty table it does not matter" in finding.message
    assert "table orders is created by 001_init.up.sql: where both are pending it is new" in (
        finding.message
    )


def test_index_on_a_small_existing_table_is_info_with_the_figures_and_the_settings() -> None:
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", SMALL)))
    assert finding.severity == Severity.INFO
    assert finding.message.endswith(
        "public.orders is small: about 120 rows, 48.0 KiB, within [lint] "
        "small_table_rows = 10000 and small_table_bytes = 8388608"
    )


def test_index_on_a_big_table_stays_an_error_and_names_the_limit_it_breaks() -> None:
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", BIG)))
    assert finding.severity == Severity.ERROR
    assert finding.message.endswith(
        "public.orders holds about 2,000,000 rows, 2.0 GiB, over [lint] small_table_rows = "
        "10000 and small_table_bytes = 8388608"
    )


def test_an_empty_table_is_info_whatever_the_limits() -> None:
    strict = LintConfig(limits=lint_config_from_table({"small_table_rows": 0}, Path("x")).limits)
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", EMPTY)), strict)
    assert finding.severity == Severity.INFO
    assert finding.message.endswith("public.orders is empty (no data pages)")


def test_small_table_limits_come_from_the_lint_settings() -> None:
    config = lint_config_from_table({"small_table_rows": 100}, Path("migrate-safe.toml"))
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", SMALL)), config)
    assert finding.severity == Severity.ERROR
    assert finding.message.endswith("over [lint] small_table_rows = 100")


def test_a_table_never_analysed_is_judged_by_the_upper_bound_of_its_pages() -> None:
    unanalysed = TableSize(
        128_913, rows_from_size=True, heap_bytes=3_629_056, total_bytes=3_629_056
    )
    finding = judged(
        "ALTER TABLE orders ALTER COLUMN id TYPE bigint;", facts(orders=table("orders", unanalysed))
    )
    assert finding.severity == Severity.ERROR
    assert "at most 128,913 rows (never analysed: bound from its size)" in finding.message


def test_an_index_name_is_judged_by_its_table() -> None:
    index = RelationFacts("public.orders_pkey", "index", "public.orders", SMALL)
    finding = judged("REINDEX INDEX orders_pkey;", facts(orders_pkey=index))
    assert finding.severity == Severity.INFO
    assert "public.orders is small" in finding.message


def test_a_view_has_no_size_so_the_finding_stays() -> None:
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", None, "view")))
    assert finding.severity == Severity.ERROR
    assert finding.message.endswith("lint cannot measure view public.orders")


def test_create_table_if_not_exists_of_a_table_the_catalog_has_is_not_new() -> None:
    text = "CREATE TABLE IF NOT EXISTS orders (id bigint);\nCREATE INDEX ON orders (id);\n"
    assert judged(text, facts(orders=table("orders", BIG))).severity == Severity.ERROR
    assert [
        f for f in lint_sql(text, options=LintOptions(tables=facts(orders=None))) if f.active
    ] == []


def test_tables_the_applied_history_created_are_not_new() -> None:
    history = [migration(1, "init", "CREATE TABLE orders (id bigint);")]
    pending = [migration(2, "idx", "CREATE INDEX ON orders (id);")]
    [finding] = lint_migrations(pending, history=history, tables=facts(orders=table("orders", BIG)))
    assert finding.severity == Severity.ERROR


def test_a_new_table_stays_new_under_its_new_name() -> None:
    pending = [
        migration(
            1,
            "init",
            "CREATE TABLE orders_tmp (id bigint);\nALTER TABLE orders_tmp RENAME TO orders;",
        ),
        migration(2, "idx", "CREATE INDEX ON orders (id);"),
    ]
    [finding] = lint_migrations(pending, tables=facts(orders=None, orders_tmp=None))
    assert finding.severity == Severity.INFO


def test_facts_that_could_not_be_read_keep_the_severity_and_say_why() -> None:
    unknown = TableFacts(note="table sizes unknown: a table stayed locked for 2s")
    finding = judged("CREATE INDEX ON orders (id);", unknown)
    assert finding.severity == Severity.ERROR
    assert finding.message.endswith("table sizes unknown: a table stayed locked for 2s")


# --- if exists, if not empty, if in use ----------------------------------------------------


def test_drop_table_if_exists_of_a_missing_table_is_info() -> None:
    finding = judged("DROP TABLE IF EXISTS nothing_here;", facts(nothing_here=None))
    assert finding.severity == Severity.INFO
    assert finding.message.endswith("nothing_here does not exist, so IF EXISTS makes this a no-op")


def test_drop_table_of_an_existing_table_stays_an_error_even_when_empty() -> None:
    finding = judged("DROP TABLE IF EXISTS orders;", facts(orders=table("orders", EMPTY)))
    assert (finding.rule, finding.severity) == ("MS401", Severity.ERROR)


def test_drop_table_without_if_exists_of_a_missing_table_stays_an_error() -> None:
    finding = judged("DROP TABLE nothing_here;", facts(nothing_here=None))
    assert finding.severity == Severity.ERROR
    assert "nothing_here is not in the database yet" in finding.message


def test_truncate_bites_only_when_the_table_has_rows() -> None:
    assert (
        judged("TRUNCATE orders;", facts(orders=table("orders", EMPTY))).severity == Severity.INFO
    )
    kept = judged("TRUNCATE orders;", facts(orders=table("orders", SMALL)))
    assert kept.severity == Severity.ERROR
    assert kept.message.endswith("public.orders holds about 120 rows, 48.0 KiB")
    cascade = judged("TRUNCATE orders CASCADE;", facts(orders=table("orders", EMPTY)))
    assert cascade.severity == Severity.ERROR  # it empties tables it does not name


def test_rename_breaks_running_code_on_any_existing_table_however_small() -> None:
    text = "ALTER TABLE orders RENAME COLUMN status TO state;"
    assert judged(text, facts(orders=table("orders", EMPTY))).severity == Severity.ERROR
    pending = [
        migration(1, "init", "CREATE TABLE orders (status text);"),
        migration(2, "rename", text),
    ]
    [finding] = lint_migrations(pending, tables=facts(orders=None))
    assert finding.severity == Severity.INFO


def test_drop_index_of_an_index_created_earlier_in_the_run_is_info() -> None:
    pending = [
        migration(1, "idx", "CREATE INDEX orders_a_idx ON orders (a);"),
        migration(2, "drop", "DROP INDEX orders_a_idx;"),
    ]
    found = lint_migrations(pending, tables=facts(orders=table("orders", SMALL), orders_a_idx=None))
    drop = next(f for f in found if f.rule == "MS102")
    assert drop.severity == Severity.INFO
    assert "index orders_a_idx is created by 001_idx.up.sql in this run" in drop.message


# --- down files -------------------------------------------------------------------------------


def test_a_down_file_never_counts_what_its_up_file_created_as_new() -> None:
    pending = [
        migration(1, "init", "CREATE TABLE orders (id bigint);", "CREATE INDEX ON orders (id);"),
    ]
    [finding] = lint_migrations(pending, tables=facts(orders=None))
    assert (finding.file, finding.severity) == ("001_init.down.sql", Severity.ERROR)
    assert lint_migrations(pending, tables=facts(orders=None), include_down=False) == []


def test_down_scripts_are_linted_in_rollback_order_against_the_tables() -> None:
    downs = [
        script_from_text("CREATE TABLE legacy (id int);", "ledger:3_drop_legacy.down.sql"),
        script_from_text("CREATE INDEX ON legacy (id);", "ledger:2_x.down.sql"),
        script_from_text("CREATE INDEX ON orders (id);", "ledger:1_y.down.sql"),
    ]
    found = lint_down_scripts(downs, tables=facts(legacy=None, orders=table("orders", BIG)))
    assert [(f.file, f.severity) for f in found] == [
        ("ledger:1_y.down.sql", Severity.ERROR),
        ("ledger:2_x.down.sql", Severity.INFO),
    ]


# --- rule metadata, settings, the way out ---------------------------------------------------


def every_relation(example: str, size: TableSize) -> TableFacts:
    named = relations_to_look_up([example])
    return TableFacts({name: table(name.name, size) for name in named})


CONDITIONAL = sorted(rule.id for rule in RULES.values() if rule.bites is not Bites.ALWAYS)


@pytest.mark.parametrize("rule", CONDITIONAL)
def test_every_conditional_rule_names_the_table_that_decides(rule: str) -> None:
    """On an empty table a 'with rows'/'if not empty' finding is info; an 'if in use' one
    stays. On a huge table every one of them stays."""
    # TRUNCATE … CASCADE empties tables it does not name, so it is judged without CASCADE.
    example = RULES[rule].unsafe_example.replace(" CASCADE", "")
    on_empty = [
        f
        for f in lint_sql(example, options=LintOptions(tables=every_relation(example, EMPTY)))
        if f.rule == rule
    ]
    on_big = [
        f
        for f in lint_sql(example, options=LintOptions(tables=every_relation(example, BIG)))
        if f.rule == rule
    ]
    assert on_empty and on_big
    harmless_when_empty = RULES[rule].bites is not Bites.IF_IN_USE
    assert all((f.severity == Severity.INFO) == harmless_when_empty for f in on_empty), on_empty
    assert all(f.severity == RULES[rule].severity for f in on_big), on_big


def test_relations_to_look_up_are_the_tables_and_indexes_lint_judges() -> None:
    named = relations_to_look_up(
        [
            "-- leading comment\nCREATE INDEX i ON app.orders (id); DROP TABLE IF EXISTS a, s.b;",
            "/* c */ DROP INDEX j; UPDATE audit SET a = 1; TRUNCATE t1, t2;",
            "INSERT INTO loaded SELECT * FROM events;",  # data statements are not parsed
            "this is not SQL",
        ]
    )
    assert named == {
        RelationName("app", "orders"),
        RelationName("app", "i"),
        RelationName(None, "a"),
        RelationName("s", "b"),
        RelationName(None, "j"),
        RelationName(None, "audit"),
        RelationName(None, "t1"),
        RelationName(None, "t2"),
    }


def test_looking_up_relations_skips_the_data_of_a_big_insert_quickly() -> None:
    rows = ",".join(f"({i}, 'row {i}')" for i in range(100_000))
    text = f"CREATE INDEX ON orders (id);\nINSERT INTO orders VALUES {rows};\n"
    started = time.monotonic()
    assert relations_to_look_up([text]) == {RelationName(None, "orders")}
    assert time.monotonic() - started < 5  # parsing every row would take several seconds


@pytest.mark.parametrize("value", [-1, "10", 1.5, True])
def test_small_table_limits_must_be_whole_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match="small_table_bytes"):
        lint_config_from_table({"small_table_bytes": value}, Path("migrate-safe.toml"))


def test_a_refusal_names_the_directive_the_settings_and_the_flags() -> None:
    finding = judged("CREATE INDEX ON orders (id);", facts(orders=table("orders", BIG)))
    text = refusal([finding], flags="`--force`")
    assert text.startswith("1 lint error(s): MS101 002_x.up.sql:1 (MS101: CREATE INDEX on orders")
    assert "`-- migrate-safe:allow=MS101` in the file's leading comments" in text
    assert '`[lint.severity] MS101 = "warning"`' in text
    assert "higher `[lint] small_table_rows` / `small_table_bytes`" in text
    assert text.endswith(", or `--force`")
    assert "migrate-safe:allow" not in refusal([finding], directive=False)


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_lint_never_imports_a_database_driver() -> None:
    """Lint stays pure: the harness reads the catalog (migrate_safe.catalog) and passes facts."""
    package = Path(__file__).resolve().parents[3] / "operator" / "migrate_safe" / "lint"
    for path in package.rglob("*.py"):
        assert not [m for m in imported_modules(path) if m.split(".")[0] == "psycopg"], path
