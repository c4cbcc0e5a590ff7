"""Where `migrate-safe lint` spends its time on the lint-vs-squawk corpus, unprofiled.

    .venv/bin/python bench/lint_vs_squawk/stages.py [--repeat 80]

Times run.py's lint run (best CPU time of the repeats, per 1,000 statements), then again with
each stage done beforehand, in turn: the statement split, the parse into the syntax tree
(libpg_query's JSON made into pglast's node classes), the directory scan. What remains is
lint's own work (rules, schema tracking, file checks, suppression, sorting) and the
benchmark's loop. Differences of best-of-N times:
on a loaded machine a stage can come out a few ms off, or below zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

import migrate_safe.lint.runner as runner
from migrate_safe.lint.sqlast import ParsedStatement, parse_script
from migrate_safe.scanner import Scan, scan_directory

sys.path.insert(0, str(Path(__file__).parent))
import run  # the benchmark beside this file


def best_cpu(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=80)
    args = parser.parse_args()
    files = run.corpus_files()
    plan = run.lint_plan(files)
    per_thousand = 1000 * 1000 / sum(len(f.spans) for f in files)

    def measure(action: Callable[[], object]) -> float:
        return best_cpu(action, args.repeat) * per_thousand

    total = measure(lambda: run.run_ours_cold(files, plan))
    split_done = measure(lambda: run.run_ours(files, plan))
    parsed: dict[str, list[ParsedStatement]] = {}

    def parse_once(text: str) -> list[ParsedStatement]:
        if text not in parsed:
            parsed[text] = parse_script(text)
        # Fresh copies: what a statement works out once for its rules is not handed on.
        return [replace(statement) for statement in parsed[text]]

    scans: dict[Path, Scan] = {d: scan_directory(d) for d in plan.directories}
    with patch.object(runner, "parse_script", parse_once):
        parse_done = measure(lambda: run.run_ours(files, plan))
        with patch.object(runner, "scan_directory", scans.__getitem__):
            scan_done = measure(lambda: run.run_ours(files, plan))
    print("| stage | ms per 1,000 statements |\n|---|---:|")
    print(f"| total | {total:.1f} |")
    print(f"| statement split | {total - split_done:.1f} |")
    print(f"| parse into the syntax tree | {split_done - parse_done:.1f} |")
    print(f"| directory scan | {parse_done - scan_done:.1f} |")
    rest = "the rest: rules, schema tracking, file checks, suppression, sorting"
    print(f"| {rest} | {scan_done:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
