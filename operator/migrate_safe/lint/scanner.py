"""A lenient reader of a migrations directory: where `source.load_source` refuses a directory,
this one reports each problem as a finding on its file and keeps going."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from migrate_safe.errors import SourceError
from migrate_safe.lint.model import Finding, Rule
from migrate_safe.lint.rules import files
from migrate_safe.source import DIRECTIVE, FILE_NAME, MAX_VERSION, Directives, parse_directives


@dataclass(frozen=True)
class ScannedFile:
    """A migration file by name; text is None when it could not be read (a finding says why),
    so it still counts for pairs and versions."""

    path: Path
    version: int
    name: str
    direction: str  # "up" or "down"
    text: str | None
    directives: Directives


def file_finding(rule: Rule, path: Path | str, message: str, line: int = 1) -> Finding:
    return Finding(rule.id, rule.severity, str(path), line, 1, message, rule.safe_alternative)


def lenient_directives(text: str, origin: str) -> tuple[Directives, list[tuple[int, str]]]:
    """Directives of the leading comments, each line parsed on its own by the loader's parser,
    so one bad directive becomes a finding at its line instead of hiding the others."""
    merged = Directives()
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("--"):
            break
        if not DIRECTIVE.match(line):
            continue
        try:
            found = parse_directives(line, f"{origin}:{number}")
        except SourceError as error:
            problems.append((number, error.message))
            continue
        merged = _merge(merged, found)
    return merged, problems


def _merge(into: Directives, found: Directives) -> Directives:
    return replace(
        into,
        no_transaction=into.no_transaction or found.no_transaction,
        lock_timeout=found.lock_timeout if found.lock_timeout is not None else into.lock_timeout,
        statement_timeout=found.statement_timeout
        if found.statement_timeout is not None
        else into.statement_timeout,
        allow=into.allow | found.allow,
    )


def scan_directory(directory: Path) -> tuple[list[ScannedFile], list[Finding]]:
    """Every readable migration file, sorted by version then direction, and the problems of
    names, pairs, versions and directives as findings."""
    scanned: list[ScannedFile] = []
    findings: list[Finding] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix != ".sql" or path.is_dir():
            continue  # ConfigMap mounts add ..data links; READMEs may sit beside the SQL
        entry = _scan_file(path, findings)
        if entry is not None:
            scanned.append(entry)
    scanned.sort(key=lambda f: (f.version, f.direction != "up", f.path.name))
    findings += _duplicates(scanned) + _pairs(scanned) + _name_order(scanned)
    return scanned, findings


def _scan_file(path: Path, findings: list[Finding]) -> ScannedFile | None:
    match = FILE_NAME.match(path.name)
    if not match:
        findings.append(
            file_finding(
                files.BAD_FILE_NAME,
                path,
                "name does not parse as NNN_name.up.sql or NNN_name.down.sql",
            )
        )
        return None
    version = int(match["version"])
    if not 0 < version <= MAX_VERSION:
        findings.append(
            file_finding(files.BAD_FILE_NAME, path, f"version must be between 1 and {MAX_VERSION}")
        )
        return None
    text = _read_text(path, findings)
    if text is None:
        return ScannedFile(path, version, match["name"], match["direction"], None, Directives())
    directives, problems = lenient_directives(text, str(path))
    for line, message in problems:
        findings.append(file_finding(files.BAD_DIRECTIVE, path, message, line))
    return ScannedFile(path, version, match["name"], match["direction"], text, directives)


def _read_text(path: Path, findings: list[Finding]) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as error:
        problem = f"cannot read: {error.strerror}"
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 (invalid byte at offset {error.start})"
    findings.append(file_finding(files.BAD_DIRECTIVE, path, problem))
    return None


def _duplicates(scanned: list[ScannedFile]) -> list[Finding]:
    first: dict[tuple[int, str], ScannedFile] = {}
    findings = []
    for entry in scanned:
        key = (entry.version, entry.direction)
        if key in first:
            findings.append(
                file_finding(
                    files.DUPLICATE_VERSION,
                    entry.path,
                    f"version {entry.version} ({entry.direction}) is also {first[key].path.name}",
                )
            )
        else:
            first[key] = entry
    return findings


def _pairs(scanned: list[ScannedFile]) -> list[Finding]:
    by_version: dict[int, dict[str, ScannedFile]] = {}
    for entry in scanned:
        by_version.setdefault(entry.version, {}).setdefault(entry.direction, entry)
    findings = []
    for version, pair in sorted(by_version.items()):
        up, down = pair.get("up"), pair.get("down")
        if up is None and down is not None:
            findings.append(
                file_finding(
                    files.ORPHAN_DOWN,
                    down.path,
                    f"down migration of version {version} has no up file",
                )
            )
        elif up is not None and down is None:
            findings.append(
                file_finding(
                    files.MISSING_DOWN, up.path, f"version {version} has no down migration"
                )
            )
        elif up is not None and down is not None and up.name != down.name:
            findings.append(
                file_finding(
                    files.NAME_MISMATCH,
                    down.path,
                    f"name differs from its up migration {up.path.name}",
                )
            )
    return findings


def _name_order(scanned: list[ScannedFile]) -> list[Finding]:
    """Files whose name sorts after a file with a higher version (9_x after 10_y)."""
    findings = []
    highest: ScannedFile | None = None
    for entry in sorted((e for e in scanned if e.direction == "up"), key=lambda e: e.path.name):
        if highest is not None and entry.version < highest.version:
            findings.append(
                file_finding(
                    files.VERSION_ORDER,
                    entry.path,
                    f"version {entry.version} sorts after {highest.path.name} by name; "
                    "pad versions to one width",
                )
            )
        elif highest is None or entry.version > highest.version:
            highest = entry
    return findings
