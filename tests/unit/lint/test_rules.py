"""Rule behaviour beyond the fixtures: what lint knows from earlier statements, version
differences, and the messages a user reads."""

from __future__ import annotations

from migrate_safe.lint import Finding, LintOptions, lint_migrations, lint_sql
from migrate_safe.scanner import Migration
from migrate_safe.source import script_from_text


def rules_of(text: str, *, pg_version: int = 15, direction: str = "up") -> list[str]:
    options = LintOptions(pg_version=pg_version)
    return [f.rule for f in lint_sql(text, direction=direction, options=options) if f.active]


def migration(version: int, name: str, up: str) -> Migration:
    return Migration(version, name, script_from_text(up, f"{version:03}_{name}.up.sql"), None)


def only(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


def test_index_on_table_created_earlier_in_the_same_file_is_fine() -> None:
    text = "CREATE TABLE audit (id bigint, at timestamptz);\nCREATE INDEX ON audit (at);\n"
    assert "MS101" not in rules_of(text)


def test_index_on_table_created_in_another_schema_spelling_still_counts_as_new() -> None:
    text = "CREATE TABLE app.audit (id bigint);\nCREATE INDEX ON audit (id);\n"
    assert "MS101" not in rules_of(text)


def test_index_before_the_table_is_created_is_flagged() -> None:
    text = "CREATE INDEX ON audit (id);\nCREATE TABLE audit (id bigint);\n"
    assert "MS101" in rules_of(text)


def test_finding_points_at_the_statement_line_and_column() -> None:
    text = "-- header\nSELECT 1;\n\n  CREATE INDEX i ON orders (a);\n"
    finding = only(lint_sql(text), "MS101")
    assert (finding.line, finding.column) == (4, 3)
    assert "orders" in finding.message


def test_stable_default_like_now_does_not_rewrite_since_pg11() -> None:
    assert "MS201" not in rules_of("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now();")
    assert "MS201" not in rules_of("ALTER TABLE t ADD COLUMN at date DEFAULT CURRENT_DATE;")


def test_volatile_defaults_rewrite() -> None:
    for default in ("random()", "clock_timestamp()", "nextval('s')", "gen_random_uuid()"):
        assert "MS201" in rules_of(f"ALTER TABLE t ADD COLUMN x text DEFAULT {default};")


def test_unknown_function_default_is_treated_as_volatile_and_says_so() -> None:
    finding = only(lint_sql("ALTER TABLE t ADD COLUMN x int DEFAULT my_func();"), "MS201")
    assert "not a known stable built-in" in finding.message


def test_constant_default_rewrites_only_up_to_pg10() -> None:
    text = "ALTER TABLE t ADD COLUMN flag boolean DEFAULT false;"
    assert "MS201" in rules_of(text, pg_version=10)
    assert "MS201" not in rules_of(text, pg_version=11)


def test_identity_serial_and_stored_generated_columns_rewrite_but_virtual_does_not() -> None:
    assert "MS201" in rules_of("ALTER TABLE t ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;")
    assert "MS201" in rules_of("ALTER TABLE t ADD COLUMN n bigserial;")
    stored = "ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS (a * 2) STORED;"
    virtual = "ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS (a * 2) VIRTUAL;"
    assert "MS201" in rules_of(stored)
    assert "MS201" not in rules_of(virtual, pg_version=18)
    assert "MS602" in rules_of(virtual, pg_version=17)


def test_not_null_column_with_identity_or_default_is_not_a_required_field() -> None:
    assert "MS202" not in rules_of("ALTER TABLE t ADD COLUMN c text NOT NULL DEFAULT '';")
    assert "MS202" in rules_of("ALTER TABLE t ADD COLUMN c text NOT NULL;")


def test_set_not_null_after_validated_check_in_same_file_passes_on_pg12_only() -> None:
    text = (
        "-- migrate-safe:no-transaction\n"
        "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c_nn;\n"
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\n"
    )
    assert "MS203" not in rules_of(text, pg_version=12)
    assert "MS203" in rules_of(text, pg_version=11)


def test_set_not_null_with_unvalidated_check_still_scans() -> None:
    text = (
        "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\n"
    )
    assert "MS203" in rules_of(text)


def test_type_change_uses_the_type_declared_in_applied_history() -> None:
    created = migration(1, "create_notes", "CREATE TABLE n (body varchar(20), code varchar(10));")
    altered = migration(
        2,
        "retype_notes",
        "ALTER TABLE n ALTER COLUMN body TYPE text;\n"
        "ALTER TABLE n ALTER COLUMN code TYPE varchar(5);",
    )
    findings = lint_migrations([altered], history=[created], include_down=False)
    findings = [f for f in findings if f.rule == "MS204"]
    assert [f.line for f in findings] == [2]
    assert "from varchar(10) to varchar(5)" in findings[0].message


def test_type_change_of_a_column_lint_has_not_seen_explains_the_doubt() -> None:
    findings = lint_sql("ALTER TABLE n ALTER COLUMN amount TYPE numeric(8, 3);")
    assert "; lint has not seen the current type;" in only(findings, "MS204").message


def test_type_change_to_a_type_nothing_coerces_to_is_a_rewrite() -> None:
    finding = only(lint_sql("ALTER TABLE t ALTER COLUMN id TYPE bigint;"), "MS204")
    assert finding.message.startswith(
        "ALTER COLUMN t.id TYPE to int8 rewrites the table and its indexes; "
    )


def test_type_change_with_using_is_a_rewrite() -> None:
    assert "MS204" in rules_of("ALTER TABLE t ALTER COLUMN v TYPE text USING v::text;")


def test_binary_coercible_changes() -> None:
    from migrate_safe.lint.rules.columns import rewrite_free
    from migrate_safe.lint.sqlast import ColumnType as T

    assert rewrite_free(T("varchar", (10,)), T("text"))
    assert rewrite_free(T("varchar", (10,)), T("varchar", (20,)))
    assert rewrite_free(T("varchar", (10,)), T("varchar"))
    assert rewrite_free(T("numeric", (8, 2)), T("numeric", (12, 2)))
    assert rewrite_free(T("cidr"), T("inet"))
    assert not rewrite_free(T("varchar", (20,)), T("varchar", (10,)))
    assert not rewrite_free(T("numeric", (8, 2)), T("numeric", (12, 3)))
    assert not rewrite_free(T("int4"), T("int8"))
    assert not rewrite_free(T("timestamp"), T("timestamptz"))


def test_reindex_on_pg11_suggests_a_rebuild_instead_of_concurrently() -> None:
    finding = only(lint_sql("REINDEX TABLE t;", options=LintOptions(pg_version=11)), "MS103")
    assert "CREATE INDEX CONCURRENTLY" in finding.safe_alternative


def test_concurrently_inside_explicit_block_of_no_transaction_file() -> None:
    text = (
        "-- migrate-safe:no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n"
    )
    finding = only(lint_sql(text), "MS601")
    assert "BEGIN" in finding.message


def test_unclosed_begin_in_no_transaction_file() -> None:
    text = "-- migrate-safe:no-transaction\nBEGIN;\nUPDATE t SET a = 1 WHERE id = 1;\n"
    assert only(lint_sql(text), "MS603").line == 2


def test_destructive_statements_in_down_migration_are_info_not_errors() -> None:
    text = "DROP TABLE customers;\nALTER TABLE orders DROP COLUMN note;\nTRUNCATE t;\n"
    down = lint_sql(text, direction="down")
    assert {f.rule for f in down} == {"MS405"}
    assert all("down migration destroys data" in f.message for f in down)
    assert {"MS401", "MS402", "MS404"} <= set(rules_of(text))


def test_dropping_a_table_created_in_the_same_file_loses_nothing() -> None:
    assert rules_of("CREATE TABLE scratch (id bigint);\nDROP TABLE scratch;\n") == []


def test_lock_timeout_rule_only_without_harness_timeouts() -> None:
    text = "ALTER TABLE t ADD COLUMN c text;"
    assert "MS604" not in rules_of(text)
    options = LintOptions(harness_timeouts=False)
    assert "MS604" in [f.rule for f in lint_sql(text, options=options)]


def test_backfill_in_no_transaction_file_is_fine() -> None:
    text = (
        "-- migrate-safe:no-transaction\nALTER TABLE t ADD COLUMN c text;\nUPDATE t SET c = '';\n"
    )
    assert "MS605" not in rules_of(text)


def test_inline_constraints_on_added_column_are_checked() -> None:
    found = rules_of("ALTER TABLE t ADD COLUMN c bigint UNIQUE REFERENCES u (id);")
    assert {"MS302", "MS303"} <= set(found)


def test_a_down_file_never_changes_what_the_next_up_file_knows() -> None:
    from migrate_safe.lint.context import SchemaState
    from migrate_safe.lint.sqlast import ColumnType

    key = ("orders", "note")
    schema = SchemaState({key: ColumnType("varchar", (10,), False)})
    fork = schema.fork()
    fork.column_types[key] = ColumnType("text", (), False)
    fork.column_types[("orders", "x")] = ColumnType("int4", (), False)
    assert schema.column_types == {key: ColumnType("varchar", (10,), False)}
