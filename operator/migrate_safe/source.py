"""The strict loader: a migrations directory as the harness runs it, or one error that lists
every problem the scanner found, each by file.

What a file is, how it is named, paired, decoded and which directives it carries is the
scanner's (`scanner.py`); this module decides which of its problems refuse a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from migrate_safe.errors import SourceError
from migrate_safe.scanner import (
    Directives,
    Migration,
    Problem,
    ProblemKind,
    Script,
    read_directives,
    scan_directory,
    sha256_hex,
)

# Problems the loader only warns about: golang-migrate itself runs such directories.
_WARNINGS = frozenset({ProblemKind.NAME_MISMATCH})
# Problems that are lint's alone (a directory with them runs the same).
_LINT_ONLY = frozenset({ProblemKind.VERSION_ORDER})


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


def load_source(directory: Path, *, allow_missing_down: bool = False) -> Source:
    """Load and pair every migration file; all problems are reported together, each by file."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations directory not found (--migrations-dir)")
    scan = scan_directory(directory)
    warned = _WARNINGS | ({ProblemKind.MISSING_DOWN} if allow_missing_down else set())
    refused = [p for p in scan.problems if p.kind not in warned | _LINT_ONLY]
    if refused:
        listing = "\n".join(f"  - {_refusal(p)}" for p in refused)
        raise SourceError(f"{len(refused)} problem(s) in {directory}:\n{listing}")
    warnings = [p.describe() for p in scan.problems if p.kind in warned]
    return Source(directory, scan.migrations(), warnings)


def _refusal(problem: Problem) -> str:
    if problem.kind == ProblemKind.MISSING_DOWN:
        return problem.describe() + "; pass --allow-missing-down"
    return problem.describe()


def parse_directives(text: str, origin: str) -> Directives:
    """Directives of a file; every problem (unknown, malformed, misplaced) is an error."""
    directives, problems = read_directives(text)
    if problems:
        raise SourceError(
            "\n".join(f"{origin}:{problem.line}: {problem.detail}" for problem in problems),
            details={"file": origin, "line": problems[0].line},
        )
    return directives


def script_from_text(text: str, origin: str) -> Script:
    """A script that is not a file of the directory (a down kept in the ledger), held to the
    same directives as one."""
    return Script(origin, text, sha256_hex(text.encode()), parse_directives(text, origin))


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
