from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_safe.errors import SourceError
from migrate_safe.lint import lint_directory
from migrate_safe.scanner import sha256_hex
from migrate_safe.source import load_source, parse_directives


def write(directory: Path, name: str, text: str | bytes = "SELECT 1;") -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_loads_golang_migrate_pairs_in_version_order_with_checksums(tmp_path: Path) -> None:
    write(tmp_path, "002_second.up.sql", "CREATE TABLE b ();")
    write(tmp_path, "002_second.down.sql", "DROP TABLE b;")
    write(tmp_path, "1_first.up.sql", "CREATE TABLE a ();")
    write(tmp_path, "1_first.down.sql", "DROP TABLE a;")
    write(tmp_path, "20240101120000_timestamped.up.sql")
    write(tmp_path, "20240101120000_timestamped.down.sql")
    write(tmp_path, "README.md", "not a migration")
    source = load_source(tmp_path)
    assert [m.version for m in source.migrations] == [1, 2, 20240101120000]
    assert [m.name for m in source.migrations] == ["first", "second", "timestamped"]
    assert source.migrations[0].up.checksum == sha256_hex(b"CREATE TABLE a ();")
    assert source.latest_version == 20240101120000


def test_every_problem_is_reported_naming_its_file(tmp_path: Path) -> None:
    write(tmp_path, "001_a.up.sql")
    write(tmp_path, "001_a.down.sql")
    write(tmp_path, "01_dup.up.sql")
    write(tmp_path, "002_latin1.up.sql", "SELECT 'caf\xe9';".encode("latin-1"))
    write(tmp_path, "002_latin1.down.sql")
    write(tmp_path, "003_no_down.up.sql")
    write(tmp_path, "004_orphan.down.sql")
    write(tmp_path, "five_bad_name.up.sql")
    with pytest.raises(SourceError) as raised:
        load_source(tmp_path)
    message = raised.value.message
    assert "01_dup.up.sql: duplicate version 1" in message
    assert "002_latin1.up.sql: not UTF-8" in message
    assert "003_no_down.up.sql: no down migration" in message
    assert "004_orphan.down.sql: down migration without an up migration" in message
    assert "five_bad_name.up.sql: name does not parse" in message


def test_missing_down_is_allowed_only_with_the_flag_and_reported(tmp_path: Path) -> None:
    write(tmp_path, "001_only_up.up.sql")
    with pytest.raises(SourceError, match="--allow-missing-down"):
        load_source(tmp_path)
    source = load_source(tmp_path, allow_missing_down=True)
    assert source.migrations[0].down is None
    assert any("001_only_up.up.sql: no down migration" in w for w in source.warnings)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="migrations directory not found"):
        load_source(tmp_path / "nope")


def test_directives_in_the_leading_comment_block() -> None:
    text = (
        "-- migrate-safe:no-transaction\n"
        "-- migrate-safe:lock-timeout=5s\n"
        "-- migrate-safe:statement-timeout=30m\n"
        "-- migrate-safe:allow=MS101, MS102\n"
        "CREATE INDEX CONCURRENTLY i ON t (x);\n"
    )
    directives = parse_directives(text, "f.sql")
    assert directives.no_transaction
    assert directives.lock_timeout == 5.0
    assert directives.statement_timeout == 1800.0
    assert directives.allow == {"MS101", "MS102"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("-- migrate-safe:no-transactions", "unknown directive"),
        ("-- migrate-safe:lock-timeout=soon", "cannot parse duration"),
        ("-- migrate-safe:lock-timeout", "needs a value"),
        ("-- migrate-safe:no-transaction=yes", "takes no value"),
    ],
)
def test_bad_directive_names_file_and_line(line: str, problem: str) -> None:
    with pytest.raises(SourceError, match=rf"f\.sql:2: .*{problem}"):
        parse_directives(f"-- header\n{line}\nSELECT 1;", "f.sql")


@pytest.mark.parametrize(
    ("line", "suggestion"),
    [
        ("-- migrate-safe:no_transaction", "-- migrate-safe:no-transaction"),
        ("-- migrate-safe: no-transaction", "-- migrate-safe:no-transaction"),
        ("-- MIGRATE-SAFE:NO-TRANSACTION", "-- migrate-safe:no-transaction"),
        ("-- migrate-safe:lock_timeout=2s", "-- migrate-safe:lock-timeout=2s"),
        ("-- migrate-safe:lock-timeout = 2s", "-- migrate-safe:lock-timeout=2s"),
        ("-- migrate_safe:no-transaction", "-- migrate-safe:no-transaction"),
        ("/* migrate-safe:no-transaction */", "-- migrate-safe:no-transaction"),
    ],
)
def test_near_miss_directives_are_errors_with_the_exact_spelling(
    line: str, suggestion: str
) -> None:
    with pytest.raises(SourceError, match=r"f\.sql:2: ") as raised:
        parse_directives(f"-- header\n{line}\nCREATE INDEX CONCURRENTLY i ON t (x);", "f.sql")
    assert f"`{suggestion}`" in raised.value.message


def test_a_directive_below_the_first_statement_is_an_error_not_ignored() -> None:
    text = "CREATE INDEX i ON t (x);\n-- migrate-safe:no-transaction\nSELECT 1;\n"
    with pytest.raises(SourceError, match=r"f\.sql:2: directive below the first SQL statement"):
        parse_directives(text, "f.sql")


def test_prose_that_mentions_the_tool_is_not_a_directive() -> None:
    text = "-- Applied by migrate-safe, see the runbook.\nSELECT 1;\n"
    assert parse_directives(text, "f.sql").no_transaction is False


def test_a_byte_order_mark_is_not_sql_and_the_checksum_is_the_files(tmp_path: Path) -> None:
    data = "\ufeff-- migrate-safe:lock-timeout=2s\nCREATE TABLE t (id int);\n".encode()
    (tmp_path / "001_t.up.sql").write_bytes(data)
    (tmp_path / "001_t.down.sql").write_text("DROP TABLE t;")
    up = load_source(tmp_path).migrations[0].up
    assert up.text.startswith("-- migrate-safe")
    assert up.directives.lock_timeout == 2.0
    assert up.checksum == hashlib.sha256(data).hexdigest()


def test_upper_case_extensions_are_named_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "001_t.up.SQL").write_text("CREATE TABLE t (id int);")
    (tmp_path / "001_t.down.sql").write_text("DROP TABLE t;")
    with pytest.raises(SourceError, match=r"001_t\.up\.SQL: .*rename it to 001_t\.up\.sql"):
        load_source(tmp_path)


names = st.from_regex(r"[0-9]{1,6}_[a-z_]{1,8}\.(up|down)\.sql", fullmatch=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(names, max_size=8, unique=True), st.binary(max_size=40))
def test_loader_either_loads_or_raises_source_error(
    tmp_path_factory: pytest.TempPathFactory, file_names: list[str], content: bytes
) -> None:
    directory = tmp_path_factory.mktemp("src")
    for name in file_names:
        write(directory, name, content)
    try:
        source = load_source(directory, allow_missing_down=True)
    except SourceError as error:
        assert str(directory) in error.message
    else:
        versions = [m.version for m in source.migrations]
        assert versions == sorted(set(versions))


def test_an_allow_above_a_later_statement_is_that_statements_not_a_misplaced_directive(
    tmp_path: Path,
) -> None:
    # What lint's way out proposes must load: the loader and lint read one scanner.
    up = "SELECT 1;\n-- migrate-safe:allow=MS101\nCREATE INDEX t_a ON t (a);\n"
    write(tmp_path, "001_t.up.sql", up)
    write(tmp_path, "001_t.down.sql", "DROP INDEX t_a;")
    assert load_source(tmp_path).migrations[0].up.directives.allow == frozenset()
    (index,) = [f for f in lint_directory(tmp_path) if f.rule == "MS101"]
    assert index.suppressed_by == "statement comment migrate-safe:allow=MS101 (line 2)"


CONTENTS = [
    b"SELECT 1;",
    b"\xff",
    b"-- migrate-safe:no_transaction\nSELECT 1;",
    b"\xef\xbb\xbfSELECT 1;",
    b"SELECT 1;\n-- migrate-safe:no-transaction\n",
]
file_names = st.from_regex(r"(0?[1-3]_[ab]\.(up|down)|[a-z]{1,3})\.(sql|SQL)", fullmatch=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(file_names, st.sampled_from(CONTENTS)), max_size=6, unique_by=lambda f: f[0])
)
def test_every_file_the_loader_refuses_has_a_file_finding_from_lint(
    tmp_path_factory: pytest.TempPathFactory, files: list[tuple[str, bytes]]
) -> None:
    directory = tmp_path_factory.mktemp("src")
    for name, content in files:
        write(directory, name, content)
    linted = {Path(f.file).name for f in lint_directory(directory) if f.rule.startswith("MS70")}
    try:
        load_source(directory)
    except SourceError as error:
        listed = error.message.splitlines()[1:]
        refused = {Path(line.removeprefix("  - ").split(":")[0]).name for line in listed}
        assert refused <= linted
