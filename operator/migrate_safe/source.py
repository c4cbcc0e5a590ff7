"""Loading migrations from a directory: golang-migrate naming, directives, checksums.

Files are `NNN_name.up.sql` / `NNN_name.down.sql`. Directives live in the leading comment
block: `-- migrate-safe:no-transaction`, `-- migrate-safe:lock-timeout=5s`,
`-- migrate-safe:statement-timeout=30m`, `-- migrate-safe:allow=MS101,MS102`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from migrate_safe.config import parse_duration
from migrate_safe.errors import ConfigError, SourceError

FILE_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.+)\.(?P<direction>up|down)\.sql$")
DIRECTIVE = re.compile(r"^--\s*migrate-safe:(?P<key>[a-z-]+)(?:=(?P<value>.*))?$")
MAX_VERSION = 2**63 - 1


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


def parse_directives(text: str, origin: str) -> Directives:
    """Read directives from the comment block that opens the file; unknown keys are errors."""
    found = Directives()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        match = DIRECTIVE.match(line)
        if match:
            found = _with_directive(found, match["key"], match["value"], f"{origin}:{number}")
    return found


def _with_directive(found: Directives, key: str, value: str | None, where: str) -> Directives:
    if key == "no-transaction":
        if value is not None:
            raise SourceError(f"{where}: directive no-transaction takes no value")
        return replace(found, no_transaction=True)
    if key in ("lock-timeout", "statement-timeout"):
        if not value:
            raise SourceError(f"{where}: directive {key} needs a value, e.g. {key}=5s")
        try:
            seconds = parse_duration(value, what=f"{where}: directive {key}")
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
        f"{where}: unknown directive migrate-safe:{key} "
        "(known: no-transaction, lock-timeout, statement-timeout, allow)"
    )


def script_from_text(text: str, origin: str) -> Script:
    return Script(origin, text, sha256_hex(text.encode()), parse_directives(text, origin))


def _read_script(path: Path) -> Script:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"{path}: cannot read: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not UTF-8 (invalid byte at offset {error.start})") from None
    return Script(str(path), text, sha256_hex(data), parse_directives(text, str(path)))


def load_source(directory: Path, *, allow_missing_down: bool = False) -> Source:
    """Load and pair every migration file; all problems are reported together, each by file."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations directory not found (--migrations-dir)")
    files: dict[int, dict[str, Path]] = {}
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix != ".sql" or path.is_dir():
            continue  # ConfigMap mounts add ..data links; READMEs may sit beside the SQL
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
        return f"{path}: name does not parse (expected NNN_name.up.sql or NNN_name.down.sql)"
    version = int(match["version"])
    if not 0 < version <= MAX_VERSION:
        return f"{path}: version must be between 1 and {MAX_VERSION}"
    slot = files.setdefault(version, {})
    direction = match["direction"]
    if direction in slot:
        return f"{path}: duplicate version {version} ({direction}), also in {slot[direction]}"
    slot[direction] = path
    return None


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
            problems.append(f"{down_path}: name differs from its up migration {up_path.name}")
            continue
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
