"""What a run leaves behind: JSONL events, a JSON report, a compact termination message.

Every byte goes through the Redactor first, so a DSN's password never reaches a file,
a terminal or the operator.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from migrate_safe.config import Redactor

TERMINATION_LIMIT = 4096


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

    def __post_init__(self) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with (self.log_dir / "events.jsonl").open("a", encoding="utf-8"):
                pass
        except OSError as error:
            self.log_problem = f"--log-dir {self.log_dir}: cannot write: {error.strerror}"

    def _dumps(self, document: dict[str, Any]) -> str:
        return self.redact(json.dumps(document, default=str, sort_keys=False))

    def event(self, kind: str, /, **fields: Any) -> None:
        """Append one JSON line to events.jsonl: the run's timeline for log shippers."""
        if self.log_problem:
            return
        record = {"ts": utcnow().isoformat(), "run_id": self.run_id, "command": self.command}
        record.update(event=kind, **fields)
        try:
            with (self.log_dir / "events.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(self._dumps(record) + "\n")
        except OSError as error:  # e.g. the volume filled up mid-run: warn once, keep going
            self.log_problem = f"--log-dir {self.log_dir}: cannot write: {error.strerror}"
            self.progress(f"warning: {self.log_problem}; events and the report are not written")

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

    def finish(self, exit_code: int, outcome: str, body: dict[str, Any]) -> Path | None:
        """Write the JSON report and the termination message; print JSON when asked."""
        finished = utcnow()
        report = {
            "command": self.command,
            "run_id": self.run_id,
            "outcome": outcome,
            "exit_code": exit_code,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_ms": round((finished - self.started_at).total_seconds() * 1000),
            **body,
        }
        path = self._write_report(report)
        state = {k: body[k] for k in ("current_version", "dirty") if k in body}
        self.event("run_finished", outcome=outcome, exit_code=exit_code, report=str(path), **state)
        self._write_termination(report)
        if self.json_output:
            self._print_json_or_text(json.dumps(json.loads(self._dumps(report)), indent=2))
        return path

    def _write_report(self, report: dict[str, Any]) -> Path | None:
        if self.log_problem:
            return None
        stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        path = self.log_dir / f"{self.command}-{stamp}-{self.run_id}.json"
        try:
            path.write_text(self._dumps(report) + "\n", encoding="utf-8")
        except OSError as error:
            self.progress(f"warning: cannot write the report {path}: {error.strerror}")
            return None
        return path

    def _write_termination(self, report: dict[str, Any]) -> None:
        target = self.termination_log
        if target is None:
            return
        try:
            target.write_text(self._summary(report), encoding="utf-8")
        except OSError as error:
            self.progress(f"warning: cannot write termination log {target}: {error.strerror}")

    def _summary(self, report: dict[str, Any]) -> str:
        """A ≤ 4 KiB digest for the kubelet to copy into the pod status: what the operator
        needs to decide its next step, never the whole report."""
        summary = digest(report)
        text = self._dumps(summary)
        while len(text.encode()) > TERMINATION_LIMIT and _shrink(summary):
            text = self._dumps(summary)
        return text


_SCALARS = (
    "command", "run_id", "outcome", "exit_code", "current_version", "latest_version",
    "pending", "missing_from_source", "dirty", "dirty_versions", "fingerprint", "plan_hash",
)  # fmt: skip


def digest(report: dict[str, Any]) -> dict[str, Any]:
    summary = {k: report[k] for k in _SCALARS if k in report}
    for key in ("applied", "rolled_back"):
        if key in report:
            summary[key] = [entry["version"] for entry in report[key]]
    for phase in ("preflight", "postflight"):
        checks = report.get(phase, {}).get("checks", [])
        problems = [c for c in checks if c["status"] != "pass"]
        if problems:
            summary[f"{phase}_problems"] = [
                {"name": c["name"], "status": c["status"], "summary": str(c["summary"])[:300]}
                for c in problems
            ]
    if "backup" in report:
        backup = report["backup"]
        summary["backup"] = {
            k: backup.get(k) for k in ("path", "size_bytes", "sha256", "created_at")
        }
    if "plan" in report:
        summary["plan"] = report["plan"]
    if "error" in report:
        error = report["error"]
        details = error.get("details") or {}
        summary["error"] = {
            "message": str(error.get("message", ""))[:800],
            **{k: details[k] for k in ("sqlstate", "file", "line", "version") if k in details},
        }
    return summary


# Lists that can lose their tail, least valuable first.
_SHRINKABLE = (
    ("plan", "migrations"), ("pending",), ("applied",), ("rolled_back",),
    ("missing_from_source",), ("preflight_problems",), ("postflight_problems",),
)  # fmt: skip


def _shrink(summary: dict[str, Any]) -> bool:
    """Drop detail in order of least value; False when nothing is left to drop."""
    for path in _SHRINKABLE:
        holder: Any = summary
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        value = holder.get(path[-1]) if isinstance(holder, dict) else None
        if isinstance(value, list) and value:
            holder[path[-1]] = value[: len(value) // 2]
            summary["truncated"] = True
            return True
    error = summary.get("error")
    if isinstance(error, dict) and len(str(error.get("message", ""))) > 200:
        error["message"] = str(error["message"])[:200] + "…"
        return True
    return False


def default_termination_log() -> Path | None:
    """In a pod the kubelet provides /dev/termination-log; elsewhere there is none."""
    path = Path("/dev/termination-log")
    return path if path.exists() and os.access(path, os.W_OK) else None
