"""What a run leaves behind: JSONL events, a JSON report, a compact termination message.

Every byte goes through the Redactor first, so a DSN's password never reaches a file,
a terminal or the operator.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

from migrate_safe.config import Redactor
from migrate_safe.outcome import FinishedRun, JsonObject, RunReport
from migrate_safe.results import PhaseResult

TERMINATION_LIMIT = 4096
# Events after which events.jsonl is written out at once (by the end of their name): a start,
# a phase's end, a failure, an interruption, a retry, a wait, the run's end. Between them,
# a line that comes FLUSH_SECONDS after the last write writes the buffer out too.
FLUSHING_EVENTS = (
    "_started",  # what may run long: a tail of the file shows what the run is doing
    "_finished",
    "_failed",
    "_interrupted",
    "_retry",
    "_holders",
    "_changes",
)
FLUSH_SECONDS = 1.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reporter:
    command: str
    log_dir: Path
    redact: Redactor
    termination_log: Path | None = None
    json_output: bool = False
    quiet: bool = False
    run_id: str = field(default_factory=new_run_id)
    started_at: datetime = field(default_factory=utcnow)
    err: TextIO | None = None  # None: whatever sys.stderr is when printing
    out: TextIO | None = None
    # Why the log directory cannot be written, if it cannot: the command then refuses to run
    # (exit 5), and the termination message and --json output still tell what happened.
    log_problem: str | None = field(init=False, default=None)
    # events.jsonl, open for the run; a copy made by dataclasses.replace (a quiet reporter)
    # shares it, so the lines stay in order.
    events_file: IO[str] | None = field(default=None, repr=False)
    _flushed_at: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self.events_file is None:
                # Opened once per run, in append mode: runs sharing the directory add lines.
                self.events_file = (self.log_dir / "events.jsonl").open("a", encoding="utf-8")
        except OSError as error:
            self.log_problem = f"--log-dir {self.log_dir}: cannot write: {error.strerror}"
        self._flushed_at = time.monotonic()

    def _dumps(self, document: Mapping[str, Any]) -> str:
        return self.redact(json.dumps(document, default=str, sort_keys=False))

    def event(self, kind: str, /, **fields: Any) -> None:
        """Append one JSON line to events.jsonl: the run's timeline for log shippers.

        Lines are buffered and written when something starts (a migration, which may run
        long), at the end of each phase, on every failure, retry or wait, and with the first
        line that comes more than FLUSH_SECONDS after the last write: one write per migration
        instead of opening the file for every line, and a crash loses no phase's outcome."""
        if self.log_problem or self.events_file is None:
            return
        record = {"ts": utcnow().isoformat(), "run_id": self.run_id, "command": self.command}
        record.update(event=kind, **fields)
        try:
            self.events_file.write(self._dumps(record) + "\n")
            if (
                kind.endswith(FLUSHING_EVENTS)
                or time.monotonic() - self._flushed_at > FLUSH_SECONDS
            ):
                self.flush_events()
        except OSError as error:  # e.g. the volume filled up mid-run: warn once, keep going
            self.log_problem = f"--log-dir {self.log_dir}: cannot write: {error.strerror}"
            self.progress(f"warning: {self.log_problem}; events and the report are not written")

    def flush_events(self) -> None:
        if self.events_file is not None:
            self.events_file.flush()
        self._flushed_at = time.monotonic()

    def progress(self, text: str) -> None:
        """A human line on stderr (stdout stays clean for --json)."""
        if not self.quiet:
            print(self.redact(text), file=self.err or sys.stderr, flush=True)

    def result(self, text: str) -> None:
        """A human result line: stdout, or stderr under --json (stdout holds only JSON)."""
        if self.json_output:
            self.progress(text)
        else:
            self._print_json_or_text(text)

    def _print_json_or_text(self, text: str) -> None:
        print(self.redact(text), file=self.out or sys.stdout, flush=True)

    def finish(self, exit_code: int, outcome: str, run: RunReport) -> Path | None:
        """Render the run once: the JSON report, the `run_finished` event, the termination
        message, and the JSON on stdout when asked."""
        finished = FinishedRun(
            self.command, self.run_id, outcome, exit_code, self.started_at, utcnow(), run
        )
        document = finished.to_json()
        path = self._write_report(document)
        state: dict[str, object] = {}
        if run.ledger is not None:
            state.update(current_version=run.ledger.current_version)
            if run.ledger.details is not None:
                state.update(dirty=bool(run.ledger.dirty_versions))
        self.event("run_finished", outcome=outcome, exit_code=exit_code, report=str(path), **state)
        self._write_termination(finished)
        if self.json_output:
            self._print_json_or_text(json.dumps(json.loads(self._dumps(document)), indent=2))
        return path

    def _write_report(self, document: JsonObject) -> Path | None:
        if self.log_problem:
            return None
        stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        path = self.log_dir / f"{self.command}-{stamp}-{self.run_id}.json"
        try:
            path.write_text(self._dumps(document) + "\n", encoding="utf-8")
        except OSError as error:
            self.progress(f"warning: cannot write the report {path}: {error.strerror}")
            return None
        return path

    def _write_termination(self, finished: FinishedRun) -> None:
        target = self.termination_log
        if target is None:
            return
        try:
            target.write_text(self._summary(finished), encoding="utf-8")
        except OSError as error:
            self.progress(f"warning: cannot write termination log {target}: {error.strerror}")

    def _summary(self, finished: FinishedRun) -> str:
        """A ≤ 4 KiB digest for the kubelet to copy into the pod status: what the operator
        needs to decide its next step (results.PhaseResult), never the whole report."""
        summary = digest(finished)
        text = self._dumps(summary.to_json())
        while len(text.encode()) > TERMINATION_LIMIT:
            shorter = _shrink(summary)
            if shorter is None:
                break
            summary = shorter
            text = self._dumps(summary.to_json())
        return text


def digest(run: FinishedRun | Mapping[str, Any]) -> PhaseResult:
    """The typed result of a run: from the run itself, or from its JSON report (a report file
    read back, or one written by hand in a test)."""
    finished = run if isinstance(run, FinishedRun) else FinishedRun.from_json(run)
    return finished.result()


def _shrink(result: PhaseResult) -> PhaseResult | None:
    """Drop detail in order of least value, halving one list at a time; None when nothing is
    left to drop. Counts (ledger.pending_count) are never shortened."""
    plan, ledger, error = result.plan, result.ledger, result.error
    if plan and plan.migrations:
        shorter_plan = replace(plan, migrations=_half(plan.migrations))
        return replace(result, plan=shorter_plan, truncated=True)
    if ledger and ledger.pending:
        shorter_ledger = replace(ledger, pending=_half(ledger.pending))
        return replace(result, ledger=shorter_ledger, truncated=True)
    if result.applied:
        return replace(result, applied=_half(result.applied), truncated=True)
    if result.rolled_back:
        return replace(result, rolled_back=_half(result.rolled_back), truncated=True)
    if result.preflight_problems:
        problems = _half(result.preflight_problems)
        return replace(result, preflight_problems=problems, truncated=True)
    if result.postflight_problems:
        problems = _half(result.postflight_problems)
        return replace(result, postflight_problems=problems, truncated=True)
    if ledger and ledger.missing_from_source:
        missing = _half(ledger.missing_from_source)
        return replace(result, ledger=replace(ledger, missing_from_source=missing), truncated=True)
    if error and len(error.message) > 200:
        return replace(result, error=replace(error, message=error.message[:200] + "…"))
    return None


T = TypeVar("T")


def _half(items: tuple[T, ...]) -> tuple[T, ...]:
    return items[: len(items) // 2]


def default_termination_log() -> Path | None:
    """In a pod the kubelet provides /dev/termination-log; elsewhere there is none."""
    path = Path("/dev/termination-log")
    return path if path.exists() and os.access(path, os.W_OK) else None
