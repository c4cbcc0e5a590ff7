"""File-level checks: lint reports, as findings, the directory problems the loader refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_safe.errors import ConfigError, SourceError
from migrate_safe.lint import lint_directory, lint_migrations, lint_sql
from migrate_safe.scanner import Migration
from migrate_safe.source import load_source, script_from_text


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return directory


def test_directory_the_loader_rejects_is_linted_with_each_problem_on_its_file(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "001_a.up.sql": "ALTER TABLE t ADD COLUMN a text;",
            "001_a.down.sql": "-- migrate-safe:allow=MS402\nALTER TABLE t DROP COLUMN a;",
            "1_b.up.sql": "SELECT 1;",
            "002_c.up.sql": "-- migrate-safe:bogus\nSELECT 1;",
            "003_d.down.sql": "SELECT 1;",
            "notes.sql": "SELECT 1;",
            "README.md": "not SQL",
        },
    )
    with pytest.raises(SourceError):
        load_source(tmp_path)
    found = {(Path(f.file).name, f.rule, f.line) for f in lint_directory(tmp_path) if f.active}
    assert found == {
        ("001_a.down.sql", "MS405", 2),
        ("1_b.up.sql", "MS705", 1),
        ("1_b.up.sql", "MS708", 1),
        ("002_c.up.sql", "MS703", 1),
        ("002_c.up.sql", "MS709", 1),
        ("003_d.down.sql", "MS704", 1),
        ("notes.sql", "MS702", 1),
    }


def test_non_utf8_file_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "001_a.up.sql").write_bytes(b"SELECT '\xff';")
    (tmp_path / "001_a.down.sql").write_text("SELECT 1;")
    findings = lint_directory(tmp_path)
    assert [(f.rule, "not UTF-8" in f.message) for f in findings] == [("MS709", True)]


def test_a_byte_order_mark_is_dropped_as_the_loader_drops_it(tmp_path: Path) -> None:
    (tmp_path / "001_a.up.sql").write_bytes(b"\xef\xbb\xbfCREATE TABLE a (id int);")
    (tmp_path / "001_a.down.sql").write_text("-- migrate-safe:allow=MS405\nDROP TABLE a;")
    assert [f.rule for f in lint_directory(tmp_path) if f.active] == []


def test_a_near_miss_directive_is_a_finding_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "001_a.up.sql").write_text("-- note\n-- migrate-safe:no_transaction\nSELECT 1;")
    (tmp_path / "001_a.down.sql").write_text("SELECT 1;")
    (finding,) = lint_directory(tmp_path)
    assert (finding.rule, finding.line) == ("MS709", 2)
    assert "`-- migrate-safe:no-transaction`" in finding.message


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        lint_directory(tmp_path / "absent")


def test_syntax_error_maps_to_file_line_and_column() -> None:
    findings = lint_sql("SELECT 1;\nCREATE TABLE (id int);\n", origin="x.up.sql")
    assert [(f.rule, f.file, f.line, f.column) for f in findings] == [("MS701", "x.up.sql", 2, 14)]


def test_syntax_error_at_end_of_input_points_at_the_last_line() -> None:
    findings = lint_sql("SELECT 1;\nCREATE INDEX\n")
    assert [(f.rule, f.line) for f in findings] == [("MS701", 2)]


def test_empty_and_comment_only_files_are_flagged() -> None:
    assert [f.rule for f in lint_sql("")] == ["MS707"]
    assert [f.rule for f in lint_sql("-- nothing yet\n")] == ["MS707"]


def migration(version: int, up: str, down: str | None = None) -> Migration:
    up_script = script_from_text(up, f"{version:03}_m.up.sql")
    down_script = script_from_text(down, f"{version:03}_m.down.sql") if down else None
    return Migration(version, "m", up_script, down_script)


def test_lint_migrations_reports_up_and_down_files_by_origin() -> None:
    pending = [migration(4, "CREATE INDEX i ON t (a);", "DROP TABLE t;")]
    findings = lint_migrations(pending)
    assert [(f.file, f.rule) for f in findings] == [
        ("004_m.down.sql", "MS405"),
        ("004_m.up.sql", "MS101"),
    ]


def test_pending_list_out_of_version_order_is_flagged() -> None:
    findings = lint_migrations([migration(5, "SELECT 1;"), migration(3, "SELECT 1;")])
    assert [(f.rule, f.file) for f in findings] == [("MS708", "003_m.up.sql")]


def test_pg_version_reaches_the_rules() -> None:
    pending = [migration(1, "ALTER TABLE t ADD COLUMN f boolean DEFAULT false;")]
    assert [f.rule for f in lint_migrations(pending, pg_version=10)] == ["MS201"]
    assert lint_migrations(pending, pg_version=16) == []
