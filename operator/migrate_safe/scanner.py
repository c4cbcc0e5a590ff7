"""The migrations directory, read leniently: the one place that says which files are
migrations, how their names, versions and pairs parse, how their bytes become text and which
directives they carry. Every problem is collected, none is raised: the loader (`source.py`)
refuses a directory that has one, lint reports each as a finding on its file.

Files are `NNN_name.up.sql` / `NNN_name.down.sql` (golang-migrate's convention). Directives
live in the leading comment block: `-- migrate-safe:no-transaction`,
`-- migrate-safe:lock-timeout=5s`, `-- migrate-safe:statement-timeout=30m`,
`-- migrate-safe:allow=MS101,MS102`. Anything that looks like a directive but is not one
exactly (a typo, a block comment, a directive below the first statement) is a problem: a
directive silently ignored is a migration run the wrong way. Below the first statement only
`-- migrate-safe:allow=…` has a meaning: it allows rules for the statement it stands above.

This module is the bottom of the harness: it imports only the statement parser, the errors and
the duration syntax, so lint can use it and stay pure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from migrate_safe.durations import parse_positive_duration
from migrate_safe.errors import ConfigError, SourceError
from migrate_safe.statements import (
    Relation,
    ScriptBody,
    SqlSyntaxError,
    Statement,
    classify_transactions,
    describe_refusal,
    split_statements,
    statement_relations,
)

FILE_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.+)\.(?P<direction>up|down)\.sql$")
DIRECTIVE = re.compile(r"^--\s*migrate-safe:(?P<key>[a-z-]+)(?:=(?P<value>.*))?$")
# Something meant as a directive: any spelling of the prefix followed by a colon.
_DIRECTIVE_LIKE = re.compile(r"(?i)migrate[-_ ]?safe\s*:")
# Searched from its "--": a pattern anchored at each line's start reads a 20 MiB file of rows
# ten times slower. The line must hold nothing but blanks before it.
_LATE_DIRECTIVE = re.compile(r"--[ \t]*(?i:migrate)[-_ ]?(?i:safe)[ \t]*:[^\n]*")
# The one directive that means something below the first statement: a statement's allow.
_STATEMENT_ALLOW = re.compile(r"^[ \t]*--[ \t]*migrate-safe:allow=[A-Z]+[0-9]+")
KNOWN_DIRECTIVES = ("no-transaction", "lock-timeout", "statement-timeout", "allow")
MAX_VERSION = 2**63 - 1
UTF8_BOM = b"\xef\xbb\xbf"
UP, DOWN = "up", "down"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- directives ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Directives:
    no_transaction: bool = False
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    allow: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DirectiveProblem:
    line: int
    detail: str  # what is wrong at that line, without the file and line


def read_directives(text: str) -> tuple[Directives, list[DirectiveProblem]]:
    """Directives of the comment block that opens the file, and every problem found, each at
    its line: near-misses of the syntax, directives in block comments or below the first
    statement."""
    found = Directives()
    problems: list[DirectiveProblem] = []
    in_block_comment = False
    body_starts = len(text)
    for number, line, offset in _lines(text):
        if in_block_comment or line.startswith("/*"):
            if _DIRECTIVE_LIKE.search(line):
                problems.append(DirectiveProblem(number, _block_comment_problem(line)))
            in_block_comment = "*/" not in (line if in_block_comment else line[2:])
            continue
        if not line:
            continue
        if not line.startswith("--"):
            body_starts = offset
            break
        match = DIRECTIVE.match(line)
        if match:
            try:
                found = _with_directive(found, match["key"], match["value"])
            except _BadDirective as error:
                problems.append(DirectiveProblem(number, error.detail))
        elif _DIRECTIVE_LIKE.search(line):
            problems.append(DirectiveProblem(number, _near_miss_problem(line)))
    return found, problems + _late_directives(text, body_starts)


def _lines(text: str) -> Iterator[tuple[int, str, int]]:
    """(line number, stripped line, offset of its start), without splitting the whole text:
    the directive block is short even when the file is 20 MiB."""
    number, offset = 1, 0
    while offset < len(text):
        end = text.find("\n", offset)
        end = len(text) if end == -1 else end
        yield number, text[offset:end].strip(), offset
        number, offset = number + 1, end + 1


def _late_directives(text: str, body_starts: int) -> list[DirectiveProblem]:
    problems: list[DirectiveProblem] = []
    for match in _LATE_DIRECTIVE.finditer(text, body_starts):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line = text[line_start : match.end()]
        if line[: match.start() - line_start].strip(" \t") or _STATEMENT_ALLOW.match(line):
            continue  # not a line comment; or it allows rules for the statement below it
        number = text.count("\n", 0, match.start()) + 1
        problems.append(
            DirectiveProblem(
                number,
                "directive below the first SQL statement is not read: "
                f"move `{line.strip()}` into the comment lines at the top of the file",
            )
        )
    return problems


def _suggestion(line: str) -> str:
    """The directive a near-miss probably meant, in the exact syntax."""
    after = _DIRECTIVE_LIKE.split(line, maxsplit=1)[-1].strip().rstrip("*/").strip()
    key, _, value = after.partition("=")
    key = key.strip().lower().replace("_", "-").replace(" ", "-")
    if key not in KNOWN_DIRECTIVES:
        return f"known directives: {', '.join(KNOWN_DIRECTIVES)}"
    return f"did you mean `-- migrate-safe:{key}{'=' + value.strip() if value else ''}`?"


def _near_miss_problem(line: str) -> str:
    return (
        f"`{line}` looks like a migrate-safe directive but is not one "
        f"(exact syntax: `-- migrate-safe:key` or `-- migrate-safe:key=value`); {_suggestion(line)}"
    )


def _block_comment_problem(line: str) -> str:
    return (
        "directives are read from `--` line comments only, not from /* */ comments; "
        f"{_suggestion(line)}"
    )


class _BadDirective(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _with_directive(found: Directives, key: str, value: str | None) -> Directives:
    if key == "no-transaction":
        if value is not None:
            raise _BadDirective("directive no-transaction takes no value")
        return replace(found, no_transaction=True)
    if key in ("lock-timeout", "statement-timeout"):
        if not value:
            raise _BadDirective(f"directive {key} needs a value, e.g. {key}=5s")
        try:
            seconds = parse_positive_duration(
                value,
                what=f"directive {key}",
                zero_means="PostgreSQL reads a zero timeout as no timeout at all",
            )
        except ConfigError as error:
            raise _BadDirective(error.message) from None
        if key == "lock-timeout":
            return replace(found, lock_timeout=seconds)
        return replace(found, statement_timeout=seconds)
    if key == "allow":
        rules = frozenset(r.strip() for r in (value or "").split(",") if r.strip())
        if not rules:
            raise _BadDirective("directive allow needs rule ids, e.g. allow=MS101")
        return replace(found, allow=found.allow | rules)
    raise _BadDirective(
        f"unknown directive migrate-safe:{key} (known: {', '.join(KNOWN_DIRECTIVES)})"
    )


# --- scripts and migrations ----------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """One SQL file (or down SQL kept in the ledger): its text, checksum and directives."""

    origin: str
    text: str
    checksum: str
    directives: Directives

    @cached_property
    def body(self) -> ScriptBody:
        """The statements the harness runs, parsed once per run; raises SourceError naming
        file:line when the file does not parse or holds transaction control."""
        no_transaction = self.directives.no_transaction
        try:
            body = classify_transactions(list(self.statements), no_transaction=no_transaction)
        except SqlSyntaxError as error:
            raise SourceError(
                f"{self.origin}:{error.line}:{error.column}: syntax error: {error.message}",
                details={"file": self.origin, "line": error.line, "column": error.column},
            ) from None
        if body.refused:
            first = body.refused[0].statement.line
            raise SourceError(
                "\n".join(
                    f"{self.origin}:{control.statement.line}: "
                    + describe_refusal(control, no_transaction=no_transaction)
                    for control in body.refused
                ),
                details={"file": self.origin, "line": first},
            )
        return body

    @cached_property
    def statements(self) -> tuple[Statement, ...]:
        """The file split into statements, once per run; raises SqlSyntaxError."""
        return tuple(split_statements(self.text))

    @cached_property
    def relations(self) -> frozenset[Relation]:
        """Every relation the file names (empty when it does not parse)."""
        try:
            statements = self.statements
        except SqlSyntaxError:
            return frozenset()
        return frozenset(r for s in statements for r in statement_relations(s.sql))

    @property
    def wrapper_note(self) -> str | None:
        """What the harness says when it drops the file's own BEGIN … COMMIT."""
        wrapper = self.body.wrapper
        if wrapper is None:
            return None
        begin, commit = wrapper
        return (
            f"{self.origin}: its {begin.keyword} (line {begin.statement.line}) … "
            f"{commit.keyword} (line {commit.statement.line}) wrapper is dropped: migrate-safe "
            "runs the file in its own transaction, together with its ledger row"
        )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Script
    down: Script | None

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


# --- the directory ---------------------------------------------------------------------------


class ProblemKind(StrEnum):
    """What is wrong; lint reports each kind under its own rule."""

    BAD_NAME = "bad-name"  # not NNN_name.up.sql / .down.sql, or a version out of range
    DUPLICATE_VERSION = "duplicate-version"
    ORPHAN_DOWN = "orphan-down"
    MISSING_DOWN = "missing-down"
    NAME_MISMATCH = "name-mismatch"  # golang-migrate pairs by version: a warning
    VERSION_ORDER = "version-order"  # name order is not version order: a warning
    UNREADABLE = "unreadable"  # cannot be read, or not UTF-8
    BAD_DIRECTIVE = "bad-directive"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    path: Path
    detail: str  # without the file (and line)
    line: int | None = None  # None: the file as a whole

    def describe(self) -> str:
        """The problem as one line naming its file (and line)."""
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.detail}"


@dataclass(frozen=True)
class ScannedFile:
    """A file whose name parses; `script` is None when it could not be read (a problem says
    why), so it still counts for pairs and versions."""

    path: Path
    version: int
    name: str
    direction: str  # UP or DOWN
    script: Script | None


@dataclass(frozen=True)
class Scan:
    directory: Path
    files: list[ScannedFile]  # by version, up before down, then by name
    problems: list[Problem]

    def migrations(self) -> list[Migration]:
        """Each version's first up file with its first down file, when both could be read
        (the problems say what is wrong with the others)."""
        migrations: list[Migration] = []
        for version, pair in sorted(_pairs(self.files).items()):
            up, down = pair.get(UP), pair.get(DOWN)
            if up is None or up.script is None or (down is not None and down.script is None):
                continue
            down_script = down.script if down is not None else None
            migrations.append(Migration(version, up.name, up.script, down_script))
        return migrations


def is_migration_candidate(path: Path) -> bool:
    """Files that must be migrations (or be reported): every `*.sql` whatever its case.
    ConfigMap mounts add hidden `..data` links; READMEs may sit beside the SQL."""
    return (
        not path.name.startswith(".") and path.name.lower().endswith(".sql") and not path.is_dir()
    )


def name_problem(name: str) -> str:
    """Why a `*.sql` file name is not a migration's, with the rename that fixes it."""
    if re.match(FILE_NAME.pattern, name, re.IGNORECASE):
        stem, direction = re.split(r"(?i)\.(up|down)\.sql$", name)[:2]
        return (
            "the .up.sql / .down.sql ending must be lower case: rename it to "
            f"{stem}.{direction.lower()}.sql"
        )
    return "name does not parse (expected NNN_name.up.sql or NNN_name.down.sql)"


def decode_sql(data: bytes) -> str:
    """The file's text; a UTF-8 byte-order mark (some editors write one) is not SQL and is
    dropped, while the checksum stays that of the bytes on disk. Raises UnicodeDecodeError
    with the offset in the file."""
    try:
        return data.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        if data.startswith(UTF8_BOM):
            error.start += len(UTF8_BOM)
        raise


def scan_directory(directory: Path) -> Scan:
    """Every migration file of `directory` and every problem of its names, versions, pairs,
    bytes and directives."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations directory not found")
    files: list[ScannedFile] = []
    problems: list[Problem] = []
    # By name: the order of paths in one directory, without comparing them part by part.
    for path in sorted(directory.iterdir(), key=lambda path: path.name):
        if is_migration_candidate(path):
            entry = _scan_file(path, problems)
            if entry is not None:
                files.append(entry)
    files.sort(key=lambda f: (f.version, f.direction != UP, f.path.name))
    problems += _duplicates(files) + _pair_problems(files) + _name_order(files)
    return Scan(directory, files, problems)


def _scan_file(path: Path, problems: list[Problem]) -> ScannedFile | None:
    match = FILE_NAME.match(path.name)
    if not match:
        problems.append(Problem(ProblemKind.BAD_NAME, path, name_problem(path.name)))
        return None
    version = int(match["version"])
    if not 0 < version <= MAX_VERSION:
        detail = f"version must be between 1 and {MAX_VERSION}"
        problems.append(Problem(ProblemKind.BAD_NAME, path, detail))
        return None
    return ScannedFile(path, version, match["name"], match["direction"], _read(path, problems))


def _read(path: Path, problems: list[Problem]) -> Script | None:
    try:
        data = path.read_bytes()
        text = decode_sql(data)
    except OSError as error:
        problems.append(Problem(ProblemKind.UNREADABLE, path, f"cannot read: {error.strerror}"))
        return None
    except UnicodeDecodeError as error:
        detail = f"not UTF-8 (invalid byte at offset {error.start})"
        problems.append(Problem(ProblemKind.UNREADABLE, path, detail))
        return None
    directives, found = read_directives(text)
    problems += [Problem(ProblemKind.BAD_DIRECTIVE, path, p.detail, p.line) for p in found]
    return Script(str(path), text, sha256_hex(data), directives)


def _duplicates(files: list[ScannedFile]) -> list[Problem]:
    first: dict[tuple[int, str], ScannedFile] = {}
    problems: list[Problem] = []
    for entry in files:
        key = (entry.version, entry.direction)
        if key in first:
            detail = (
                f"duplicate version {entry.version} ({entry.direction}), also in {first[key].path}"
            )
            problems.append(Problem(ProblemKind.DUPLICATE_VERSION, entry.path, detail))
        else:
            first[key] = entry
    return problems


def _pairs(files: list[ScannedFile]) -> dict[int, dict[str, ScannedFile]]:
    """Each version's first file of each direction (later ones are duplicates)."""
    pairs: dict[int, dict[str, ScannedFile]] = {}
    for entry in files:
        pairs.setdefault(entry.version, {}).setdefault(entry.direction, entry)
    return pairs


def _pair_problems(files: list[ScannedFile]) -> list[Problem]:
    problems: list[Problem] = []
    for _version, pair in sorted(_pairs(files).items()):
        up, down = pair.get(UP), pair.get(DOWN)
        if up is None and down is not None:
            detail = "down migration without an up migration"
            problems.append(Problem(ProblemKind.ORPHAN_DOWN, down.path, detail))
        elif up is not None and down is None:
            detail = "no down migration (it cannot be rolled back)"
            problems.append(Problem(ProblemKind.MISSING_DOWN, up.path, detail))
        elif up is not None and down is not None and up.name != down.name:
            # golang-migrate pairs files by version alone, so existing directories do this;
            # the up file's name is the migration's name.
            detail = (
                f"name differs from its up migration {up.path.name}; paired by version, as "
                "golang-migrate does"
            )
            problems.append(Problem(ProblemKind.NAME_MISMATCH, down.path, detail))
    return problems


def _name_order(files: list[ScannedFile]) -> list[Problem]:
    """Files whose name sorts after a file with a higher version (9_x after 10_y)."""
    problems: list[Problem] = []
    highest: ScannedFile | None = None
    for entry in sorted((e for e in files if e.direction == UP), key=lambda e: e.path.name):
        if highest is not None and entry.version < highest.version:
            detail = (
                f"version {entry.version} sorts after {highest.path.name} by name; "
                "pad versions to one width"
            )
            problems.append(Problem(ProblemKind.VERSION_ORDER, entry.path, detail))
        elif highest is None or entry.version > highest.version:
            highest = entry
    return problems
