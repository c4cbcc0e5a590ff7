"""Loading migrations from a directory: golang-migrate naming, directives, checksums.

Files are `NNN_name.up.sql` / `NNN_name.down.sql`. Directives live in the leading comment
block: `-- migrate-safe:no-transaction`, `-- migrate-safe:lock-timeout=5s`,
`-- migrate-safe:statement-timeout=30m`, `-- migrate-safe:allow=MS101,MS102`. Anything that
looks like a directive but is not one exactly (a typo, a block comment, a directive below the
first statement) is an error: a directive silently ignored is a migration run the wrong way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from migrate_safe.config import parse_positive_duration
from migrate_safe.errors import ConfigError, SourceError
from migrate_safe.statements import (
    Relation,
    ScriptBody,
    SqlSyntaxError,
    describe_refusal,
    script_body,
    touched_relations,
)

FILE_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.+)\.(?P<direction>up|down)\.sql$")
DIRECTIVE = re.compile(r"^--\s*migrate-safe:(?P<key>[a-z-]+)(?:=(?P<value>.*))?$")
# Something meant as a directive: any spelling of the prefix followed by a colon.
_DIRECTIVE_LIKE = re.compile(r"(?i)migrate[-_ ]?safe\s*:")
_LATE_DIRECTIVE = re.compile(r"(?im)^[ \t]*--[ \t]*migrate[-_ ]?safe[ \t]*:.*$")
KNOWN_DIRECTIVES = ("no-transaction", "lock-timeout", "statement-timeout", "allow")
MAX_VERSION = 2**63 - 1
UTF8_BOM = b"\xef\xbb\xbf"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Directives:
    no_transaction: bool = False
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    allow: frozenset[str] = frozenset()


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
            body = script_body(self.text, no_transaction=no_transaction)
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
    def relations(self) -> frozenset[Relation]:
        """Every relation the file names (empty when it does not parse)."""
        return frozenset(touched_relations(self.text))

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


def check_scripts(scripts: Iterable[Script]) -> list[str]:
    """Parse every script before the first statement of a run executes.

    Returns the notes to tell the user (wrappers dropped); raises one SourceError listing
    every file that cannot run, so nothing is half-applied because of file 5 of 8.
    """
    notes: list[str] = []
    problems: list[SourceError] = []
    for script in scripts:
        try:
            note = script.wrapper_note
        except SourceError as error:
            problems.append(error)
            continue
        if note:
            notes.append(note)
    if problems:
        listing = "\n".join(f"  - {line}" for p in problems for line in p.message.splitlines())
        raise SourceError(
            f"{len(problems)} migration file(s) cannot run; nothing was run:\n{listing}",
            details=problems[0].details,
        )
    return notes


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Script
    down: Script | None

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


@dataclass
class Source:
    directory: Path
    migrations: list[Migration]
    warnings: list[str] = field(default_factory=list)

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}

    @property
    def latest_version(self) -> int | None:
        return self.migrations[-1].version if self.migrations else None


@dataclass(frozen=True)
class DirectiveProblem:
    line: int
    message: str


def parse_directives(text: str, origin: str) -> Directives:
    """Directives of a file; every problem (unknown, malformed, misplaced) is an error."""
    directives, problems = read_directives(text, origin)
    if problems:
        raise SourceError(
            "\n".join(problem.message for problem in problems),
            details={"file": origin, "line": problems[0].line},
        )
    return directives


def read_directives(text: str, origin: str) -> tuple[Directives, list[DirectiveProblem]]:
    """Directives of the comment block that opens the file, and every problem found, each at
    its line: near-misses of the syntax, directives in block comments or below the first
    statement. Lint reports the problems as findings; the loader refuses the file."""
    found = Directives()
    problems: list[DirectiveProblem] = []
    in_block_comment = False
    body_starts = len(text)
    for number, line, offset in _lines(text):
        where = f"{origin}:{number}"
        if in_block_comment or line.startswith("/*"):
            if _DIRECTIVE_LIKE.search(line):
                problems.append(DirectiveProblem(number, _block_comment_problem(where, line)))
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
                found = _with_directive(found, match["key"], match["value"], where)
            except SourceError as error:
                problems.append(DirectiveProblem(number, error.message))
        elif _DIRECTIVE_LIKE.search(line):
            problems.append(DirectiveProblem(number, _near_miss_problem(where, line)))
    problems += _late_directives(text, body_starts, origin)
    return found, problems


def _lines(text: str) -> Iterator[tuple[int, str, int]]:
    """(line number, stripped line, offset of its start), without splitting the whole text:
    the directive block is short even when the file is 20 MiB."""
    number, offset = 1, 0
    while offset < len(text):
        end = text.find("\n", offset)
        end = len(text) if end == -1 else end
        yield number, text[offset:end].strip(), offset
        number, offset = number + 1, end + 1


def _late_directives(text: str, body_starts: int, origin: str) -> list[DirectiveProblem]:
    problems: list[DirectiveProblem] = []
    for match in _LATE_DIRECTIVE.finditer(text, body_starts):
        number = text.count("\n", 0, match.start()) + 1
        problems.append(
            DirectiveProblem(
                number,
                f"{origin}:{number}: directive below the first SQL statement is not read: "
                f"move `{match[0].strip()}` into the comment lines at the top of the file",
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


def _near_miss_problem(where: str, line: str) -> str:
    return (
        f"{where}: `{line}` looks like a migrate-safe directive but is not one "
        f"(exact syntax: `-- migrate-safe:key` or `-- migrate-safe:key=value`); {_suggestion(line)}"
    )


def _block_comment_problem(where: str, line: str) -> str:
    return (
        f"{where}: directives are read from `--` line comments only, not from /* */ comments; "
        f"{_suggestion(line)}"
    )


def _with_directive(found: Directives, key: str, value: str | None, where: str) -> Directives:
    if key == "no-transaction":
        if value is not None:
            raise SourceError(f"{where}: directive no-transaction takes no value")
        return replace(found, no_transaction=True)
    if key in ("lock-timeout", "statement-timeout"):
        if not value:
            raise SourceError(f"{where}: directive {key} needs a value, e.g. {key}=5s")
        try:
            seconds = parse_positive_duration(
                value,
                what=f"{where}: directive {key}",
                zero_means="PostgreSQL reads a zero timeout as no timeout at all",
            )
        except ConfigError as error:
            raise SourceError(error.message) from None
        if key == "lock-timeout":
            return replace(found, lock_timeout=seconds)
        return replace(found, statement_timeout=seconds)
    if key == "allow":
        rules = frozenset(r.strip() for r in (value or "").split(",") if r.strip())
        if not rules:
            raise SourceError(f"{where}: directive allow needs rule ids, e.g. allow=MS101")
        return replace(found, allow=found.allow | rules)
    raise SourceError(
        f"{where}: unknown directive migrate-safe:{key} (known: {', '.join(KNOWN_DIRECTIVES)})"
    )


def script_from_text(text: str, origin: str) -> Script:
    return Script(origin, text, sha256_hex(text.encode()), parse_directives(text, origin))


def _read_script(path: Path) -> Script:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"{path}: cannot read: {error.strerror}") from None
    text = decode_sql(data, path)
    return Script(str(path), text, sha256_hex(data), parse_directives(text, str(path)))


def decode_sql(data: bytes, path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark (some editors write one) is not SQL and is
    dropped, while the checksum stays that of the bytes on disk."""
    try:
        return data.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + (len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0)
        raise SourceError(f"{path}: not UTF-8 (invalid byte at offset {offset})") from None


def is_migration_candidate(path: Path) -> bool:
    """Files that must be migrations (or be reported): every `*.sql` whatever its case.
    ConfigMap mounts add hidden `..data` links; READMEs may sit beside the SQL."""
    return (
        not path.name.startswith(".") and path.name.lower().endswith(".sql") and not path.is_dir()
    )


def load_source(directory: Path, *, allow_missing_down: bool = False) -> Source:
    """Load and pair every migration file; all problems are reported together, each by file."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations directory not found (--migrations-dir)")
    files: dict[int, dict[str, Path]] = {}
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if not is_migration_candidate(path):
            continue
        problem = _file_problem(path, files)
        if problem:
            problems.append(problem)
    migrations, warnings = _pair(files, problems, allow_missing_down)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise SourceError(f"{len(problems)} problem(s) in {directory}:\n{listing}")
    return Source(directory, migrations, warnings)


def _file_problem(path: Path, files: dict[int, dict[str, Path]]) -> str | None:
    match = FILE_NAME.match(path.name)
    if not match:
        return f"{path}: {name_problem(path.name)}"
    version = int(match["version"])
    if not 0 < version <= MAX_VERSION:
        return f"{path}: version must be between 1 and {MAX_VERSION}"
    slot = files.setdefault(version, {})
    direction = match["direction"]
    if direction in slot:
        return f"{path}: duplicate version {version} ({direction}), also in {slot[direction]}"
    slot[direction] = path
    return None


def name_problem(name: str) -> str:
    """Why a `*.sql` file name is not a migration's, with the rename that fixes it."""
    if re.match(FILE_NAME.pattern, name, re.IGNORECASE):
        stem, direction = re.split(r"(?i)\.(up|down)\.sql$", name)[:2]
        return (
            "the .up.sql / .down.sql ending must be lower case: rename it to "
            f"{stem}.{direction.lower()}.sql"
        )
    return "name does not parse (expected NNN_name.up.sql or NNN_name.down.sql)"


def _name_of(path: Path) -> str:
    match = FILE_NAME.match(path.name)
    assert match is not None  # only matching files are collected
    return match["name"]


def _pair(
    files: dict[int, dict[str, Path]], problems: list[str], allow_missing_down: bool
) -> tuple[list[Migration], list[str]]:
    migrations: list[Migration] = []
    warnings: list[str] = []
    for version in sorted(files):
        up_path, down_path = files[version].get("up"), files[version].get("down")
        if up_path is None:
            problems.append(f"{down_path}: down migration without an up migration")
            continue
        if down_path is not None and _name_of(down_path) != _name_of(up_path):
            # golang-migrate pairs files by version alone, so existing directories do this; the
            # up file's name is the migration's name.
            warnings.append(
                f"{down_path}: name differs from its up migration {up_path.name}; paired by "
                "version, as golang-migrate does"
            )
        if down_path is None:
            message = f"{up_path}: no down migration (it cannot be rolled back)"
            (warnings if allow_missing_down else problems).append(
                message if allow_missing_down else message + "; pass --allow-missing-down"
            )
        try:
            up = _read_script(up_path)
            down = _read_script(down_path) if down_path else None
        except SourceError as error:
            problems.append(error.message)
            continue
        migrations.append(Migration(version, _name_of(up_path), up, down))
    return migrations, warnings
