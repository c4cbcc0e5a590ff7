"""What lint reports: severities, rule metadata and findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Severity(StrEnum):
    """Errors fail lint; warnings fail only under --strict; info is advice."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Rule:
    """One lint rule: its stable id and everything the docs and reports say about it."""

    id: str
    name: str
    severity: Severity
    family: str
    summary: str
    safe_alternative: str
    lock: str
    why: str
    unsafe_example: str
    safe_example: str


@dataclass(frozen=True)
class Hit:
    """A rule matched a statement; the rule may refine the advice for this statement."""

    message: str
    safe_alternative: str | None = None


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    file: str
    line: int
    column: int
    message: str
    safe_alternative: str
    suppressed_by: str | None = None

    @property
    def active(self) -> bool:
        return self.suppressed_by is None

    def as_dict(self) -> dict[str, object]:
        fields = asdict(self)
        fields["severity"] = self.severity.value
        return fields
