"""kstatus-style conditions: upsert by type, lastTransitionTime moves only when status flips."""

from __future__ import annotations

from typing import Any

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
PREFLIGHT_PASSED, BACKED_UP, APPLIED = "PreflightPassed", "BackedUp", "Applied"
POSTFLIGHT_PASSED, ROLLED_BACK = "PostflightPassed", "RolledBack"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

Condition = dict[str, Any]


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """A new list with `kind` set; other conditions keep their order and values."""
    previous = next((c for c in conditions if c["type"] == kind), None)
    changed = previous is None or previous["status"] != status
    updated = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": now if changed else previous["lastTransitionTime"],  # type: ignore[index]
    }
    if previous is None:
        return [*conditions, updated]
    return [updated if c["type"] == kind else c for c in conditions]


def condition(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c["type"] == kind), None)


def is_true(conditions: list[Condition], kind: str) -> bool:
    found = condition(conditions, kind)
    return found is not None and found["status"] == TRUE
