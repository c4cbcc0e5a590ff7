"""What a phase Job reports and the operator reads: the one contract between the two faces.

The harness writes it as the pod's termination message (≤ 4 KiB of JSON, see report.py); the
operator reads it back from the pod status and keeps it in the resource's status. Both sides use
these types, so a renamed field breaks the build, not a cluster. No dependency beyond the
standard library: the harness and the operator layer both import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SUCCEEDED, FAILED, INTERRUPTED = "succeeded", "failed", "interrupted"


@dataclass(frozen=True)
class LedgerView:
    """The ledger as the run left it (read back after the run, on failure too)."""

    current_version: int | None = None
    latest_version: int | None = None
    # Never truncated: the count is what metrics and status report; the list may be shortened
    # to fit the termination message (then `ResultTruncated` says so).
    pending_count: int = 0
    pending: tuple[int, ...] = ()
    missing_from_source: tuple[int, ...] = ()
    dirty_versions: tuple[int, ...] = ()

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_versions)


@dataclass(frozen=True)
class CheckProblem:
    """A preflight or postflight check that did not pass."""

    name: str
    status: str  # warn | fail
    summary: str


@dataclass(frozen=True)
class BackupInfo:
    path: str
    size_bytes: int
    sha256: str
    created_at: str


@dataclass(frozen=True)
class PlannedMigration:
    version: int
    name: str
    no_transaction: bool = False
    locks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedPlan:
    """What Plan mode publishes for approval."""

    hash: str
    direction: str
    migrations: tuple[PlannedMigration, ...] = ()
    lint: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """As the report and the resource's status.plan show it (camelCase, like the CRD)."""
        return {
            "hash": self.hash,
            "direction": self.direction,
            "migrations": [
                {
                    "version": m.version,
                    "name": m.name,
                    "noTransaction": m.no_transaction,
                    "locks": list(m.locks),
                }
                for m in self.migrations
            ],
            "lint": dict(self.lint),
        }


@dataclass(frozen=True)
class ErrorInfo:
    """Why a run failed. `transient`: worth retrying as it is (the database could not be
    reached, a lock stayed taken, the server was shutting down); otherwise a person must act
    (an SQL error in a migration, an edited file, a dirty ledger, a bad flag)."""

    message: str
    transient: bool = False
    sqlstate: str | None = None
    file: str | None = None
    line: int | None = None
    version: int | None = None
    check: str | None = None  # the preflight check that refused, when one did


@dataclass(frozen=True)
class PhaseResult:
    command: str
    outcome: str  # succeeded | failed | interrupted
    exit_code: int
    run_id: str = ""
    ledger: LedgerView | None = None  # None: this command did not read the ledger
    fingerprint: str | None = None
    plan_hash: str | None = None
    applied: tuple[int, ...] = ()
    rolled_back: tuple[int, ...] = ()
    preflight_problems: tuple[CheckProblem, ...] = ()
    postflight_problems: tuple[CheckProblem, ...] = ()
    backup: BackupInfo | None = None
    plan: PublishedPlan | None = None
    error: ErrorInfo | None = None
    truncated: bool = False  # lists were shortened to fit 4 KiB; counts never are

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED and self.exit_code == 0

    @property
    def transient(self) -> bool:
        return self.error is not None and self.error.transient

    def failed_checks(self) -> list[str]:
        return [p.name for p in self.preflight_problems if p.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, without the empty parts (the termination message is small)."""
        compact: dict[str, Any] = _compact(asdict(self))
        return compact

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PhaseResult:
        """Read a result back; raises ValueError when it is not one (a truncated message,
        an older harness): the operator then treats the Job as having left no result."""
        try:
            result: PhaseResult = _build(cls, data)
            return result
        except (TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"not a migrate-safe result: {error}") from None


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items() if not _empty(item)}
    if isinstance(value, list | tuple):
        return [_compact(item) for item in value]
    return value


def _empty(value: Any) -> bool:
    """Left out of the JSON because it is the default (0 and "" are values, not defaults)."""
    return value is None or value is False or (isinstance(value, list | tuple | dict) and not value)


# Field type → how to read it from JSON. Only the shapes this module uses.
_NESTED: dict[str, type] = {
    "ledger": LedgerView,
    "backup": BackupInfo,
    "plan": PublishedPlan,
    "error": ErrorInfo,
}
_NESTED_LISTS: dict[str, type] = {
    "preflight_problems": CheckProblem,
    "postflight_problems": CheckProblem,
    "migrations": PlannedMigration,
}


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__} must be an object")
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in known:
            continue  # a newer harness may say more; the contract is what both know
        if key in _NESTED and raw is not None:
            values[key] = _build(_NESTED[key], raw)
        elif key in _NESTED_LISTS:
            values[key] = tuple(_build(_NESTED_LISTS[key], item) for item in raw)
        elif isinstance(raw, list):
            values[key] = tuple(raw)
        elif key == "lint":
            values[key] = dict(raw)
        else:
            values[key] = raw
    return cls(**values)
