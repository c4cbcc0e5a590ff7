"""Compare `migrate-safe lint` with squawk on the rule fixtures and the examples.

    .venv/bin/pip install squawk-cli
    .venv/bin/python bench/lint_vs_squawk/run.py [--repeat 5]

Prints a Markdown table: statements, findings per tool, findings on the safe rewrites (false
positives), squawk findings we do not match (and the reverse), time per 1,000 statements.
Each squawk finding is matched to ours when one of our findings on the same statement has a
rule that README.md maps to the squawk rule.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrate_safe import statements
from migrate_safe.errors import SourceError
from migrate_safe.lint import Finding, LintOptions, lint_directory, lint_sql
from migrate_safe.lint.sqlast import parse_script
from migrate_safe.scanner import FILE_NAME
from migrate_safe.source import parse_directives
from migrate_safe.statements import SqlSyntaxError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "lint_fixtures"
EXAMPLES = ROOT / "examples" / "migrations"
PG_VERSION = re.compile(r"^-- lint-fixture: pg-version=(\d+)$", re.M)

# squawk rule → our rules that report the same danger (see README.md for the reasoning).
SQUAWK_TO_OURS: dict[str, set[str]] = {
    "adding-field-with-default": {"MS201"},
    "adding-foreign-key-constraint": {"MS302"},
    "adding-not-nullable-field": {"MS203"},
    "adding-required-field": {"MS202"},
    "adding-serial-primary-key-field": {"MS304", "MS201"},
    "ban-alter-domain-with-add-constraint": {"MS504"},
    "ban-concurrent-index-creation-in-transaction": {"MS601"},
    "ban-drop-column": {"MS402", "MS405"},
    "ban-drop-database": {"MS403", "MS405"},
    "ban-drop-schema": {"MS403", "MS405"},
    "ban-drop-not-null": {"MS207"},
    "ban-drop-table": {"MS401", "MS405"},
    "ban-truncate-cascade": {"MS404", "MS405"},
    "ban-uncommitted-transaction": {"MS603"},
    "changing-column-type": {"MS204"},
    "constraint-missing-not-valid": {"MS301", "MS302", "MS303", "MS304", "MS305", "MS306"},
    "disallowed-unique-constraint": {"MS303"},
    "prefer-bigint-over-int": {"MS804"},
    "prefer-bigint-over-smallint": {"MS804"},
    "prefer-repack": {"MS501"},
    "prefer-robust-stmts": {"MS606"},
    "prefer-text-field": {"MS801"},
    "prefer-timestamp-tz": {"MS802"},
    "prefer-identity": {"MS804"},
    "syntax-error": {"MS701"},
    "renaming-column": {"MS205"},
    "renaming-table": {"MS206"},
    "require-concurrent-index-creation": {"MS101"},
    "require-concurrent-index-deletion": {"MS102"},
    "require-concurrent-partition-detach": {"MS503"},
    "require-concurrent-reindex": {"MS103"},
    "require-lock-timeout": {"MS604"},
    "transaction-nesting": {"MS603"},
}


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    text: str
    safe: bool  # a safe rewrite: every finding on it is a false positive
    pg_version: int
    transactional: bool
    spans: list[tuple[int, int]]  # statement line spans


def corpus_files() -> list[CorpusFile]:
    paths = sorted(FIXTURES.rglob("*.sql")) + sorted(EXAMPLES.glob("*.sql"))
    files = []
    for path in paths:
        text = path.read_text()
        version = PG_VERSION.search(text)
        try:
            transactional = not parse_directives(text, str(path)).no_transaction
            spans = [(s.line, s.end_line) for s in parse_script(text)]
        except (SqlSyntaxError, SourceError):  # the syntax and directive fixtures
            transactional, spans = True, []
        pg_version = int(version[1]) if version else 15
        files.append(CorpusFile(path, text, is_safe(path), pg_version, transactional, spans))
    return files


def is_safe(path: Path) -> bool:
    """The examples, and every fixture under MSxxx/safe* (a file or a directory)."""
    if FIXTURES not in path.parents:
        return True
    return path.relative_to(FIXTURES).parts[1].startswith("safe")


def statement_of(file: CorpusFile, line: int) -> int:
    for index, (first, last) in enumerate(file.spans):
        if first <= line <= last:
            return index
    return -1


# --- running the tools -------------------------------------------------------------------


@dataclass(frozen=True)
class LintPlan:
    """What run_ours lints: directories as directories (they carry history), the other files
    on their own. Worked out once, outside the timing: it is the harness's bookkeeping, not
    lint's work."""

    directories: list[Path]
    singles: list[CorpusFile]


def lint_plan(files: list[CorpusFile]) -> LintPlan:
    directories = sorted({f.path.parent for f in files if FILE_NAME.match(f.path.name)})
    in_directory = set(directories)
    return LintPlan(directories, [f for f in files if f.path.parent not in in_directory])


def run_ours(files: list[CorpusFile], plan: LintPlan) -> dict[Path, list[Finding]]:
    found: dict[Path, list[Finding]] = {file.path: [] for file in files}
    for directory in plan.directories:
        for finding in lint_directory(directory):
            found.setdefault(Path(finding.file), []).append(finding)
    for file in plan.singles:
        direction = "down" if file.path.name.endswith(".down.sql") else "up"
        options = LintOptions(file.pg_version, "no-harness-timeouts" not in file.text)
        found[file.path] = lint_sql(
            file.text, origin=str(file.path), direction=direction, options=options
        )
    return found


def run_ours_cold(files: list[CorpusFile], plan: LintPlan) -> dict[Path, list[Finding]]:
    """run_ours as one CLI run pays for it: statements.py keeps the files' splits for the
    commands of one run that read a file again, so each repeat (and the corpus reading
    above) would leave the next one the splits for free."""
    statements._split.cache_clear()
    return run_ours(files, plan)


def run_squawk(squawk: str, files: list[CorpusFile]) -> dict[Path, list[dict[str, object]]]:
    """One squawk process per (pg version, transaction mode): the harness runs a transactional
    file in one transaction, which squawk models with --assume-in-transaction."""
    groups: dict[tuple[int, bool], list[CorpusFile]] = {}
    for file in files:
        groups.setdefault((file.pg_version, file.transactional), []).append(file)
    found: dict[Path, list[dict[str, object]]] = {file.path: [] for file in files}
    for (pg_version, transactional), members in groups.items():
        command = [squawk, "--reporter", "json", f"--pg-version={pg_version}.0"]
        command += ["--assume-in-transaction"] if transactional else []
        command += [str(f.path) for f in members]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        for item in json.loads(result.stdout or "[]"):
            found.setdefault(Path(str(item["file"])), []).append(item)
    return found


@dataclass(frozen=True)
class Timing:
    """Best of the repeats: wall seconds, and CPU seconds of this process and its children
    (squawk runs as a child): CPU time holds still when other work shares the machine."""

    wall: float
    cpu: float


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object], repeat: int) -> Timing:
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        action()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, _cpu_seconds() - cpu_started)
    return Timing(wall, cpu)


# --- comparison --------------------------------------------------------------------------


def compare(
    files: list[CorpusFile],
    ours: dict[Path, list[Finding]],
    theirs: dict[Path, list[dict[str, object]]],
) -> tuple[Counter[str], Counter[str], int, tuple[int, int]]:
    """(squawk rules we miss, our rules squawk misses, squawk findings on safe files, ours on
    safe files as (all, without info))."""
    only_squawk: Counter[str] = Counter()
    only_ours: Counter[str] = Counter()
    squawk_safe = ours_safe = ours_safe_not_info = 0
    for file in files:
        mine = [f for f in ours.get(file.path, []) if f.active]
        mine_any = ours.get(file.path, [])  # a suppressed finding still shows we saw the danger
        by_statement: dict[int, set[str]] = {}
        for finding in mine_any:
            by_statement.setdefault(statement_of(file, finding.line), set()).add(finding.rule)
        matched_ours: set[tuple[int, str]] = set()
        for item in theirs.get(file.path, []):
            rule = str(item["rule_name"])
            statement = statement_of(file, int(str(item["line"])) + 1)
            hits = SQUAWK_TO_OURS.get(rule, set()) & by_statement.get(statement, set())
            if not hits:
                only_squawk[rule] += 1
            matched_ours |= {(statement, r) for r in hits}
        for finding in mine:
            if (statement_of(file, finding.line), finding.rule) not in matched_ours:
                only_ours[finding.rule] += 1
        if file.safe:
            squawk_safe += len(theirs.get(file.path, []))
            ours_safe += len(mine)
            ours_safe_not_info += sum(1 for f in mine if f.severity.value != "info")
    return only_squawk, only_ours, squawk_safe, (ours_safe, ours_safe_not_info)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    squawk = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    files = corpus_files()
    statements = sum(len(f.spans) for f in files)
    plan = lint_plan(files)
    ours = run_ours(files, plan)
    theirs = run_squawk(squawk, files)
    only_squawk, only_ours, squawk_safe, ours_safe = compare(files, ours, theirs)
    ours_time = timed(lambda: run_ours_cold(files, plan), args.repeat)
    squawk_time = timed(lambda: run_squawk(squawk, files), args.repeat)
    version = subprocess.run([squawk, "--version"], capture_output=True, text=True).stdout.strip()
    ours_count = sum(1 for fs in ours.values() for f in fs if f.active)
    theirs_count = sum(len(v) for v in theirs.values())
    print(
        f"Corpus: {len(files)} files, {statements} statements "
        f"(tests/lint_fixtures + examples/migrations); {version}\n"
    )
    print("| | migrate-safe lint | squawk |")
    print("|---|---|---|")
    print(f"| findings (unsuppressed) | {ours_count} | {theirs_count} |")
    print(
        f"| findings on safe rewrites and examples | {ours_safe[0]} "
        f"({ours_safe[1]} above info) | {squawk_safe} |"
    )
    print(
        f"| findings only this tool reports | {sum(only_ours.values())} | "
        f"{sum(only_squawk.values())} |"
    )
    per_thousand = 1000 * 1000 / statements  # seconds → ms per 1,000 statements
    print(
        f"| time per 1,000 statements | {ours_time.wall * per_thousand:.1f} ms | "
        f"{squawk_time.wall * per_thousand:.1f} ms |"
    )
    print(
        f"| CPU time per 1,000 statements | {ours_time.cpu * per_thousand:.1f} ms | "
        f"{squawk_time.cpu * per_thousand:.1f} ms |"
    )
    print("\nSquawk findings with no matching migrate-safe finding, by rule:\n")
    for rule, count in only_squawk.most_common():
        print(f"- {rule}: {count}")
    print("\nmigrate-safe findings with no matching squawk finding, by rule:\n")
    for rule, count in only_ours.most_common():
        print(f"- {rule}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
