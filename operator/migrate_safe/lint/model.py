"""What lint reports: severities, rule metadata and findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from migrate_safe.lint.facts import RelationName


class Severity(StrEnum):
    """Errors fail lint; warnings fail only under --strict; info is advice."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Bites(StrEnum):
    """When a rule's danger is real. Against a database, lint judges each finding of a rule
    that bites only under a condition by the table it names; without one, it says the
    condition in the message and keeps the severity."""

    ALWAYS = "always"
    # Work that grows with the rows (scans, rewrites, index builds) under a strong lock:
    # harmless on a table created in this run, or one within the [lint] small_table_* limits.
    WITH_ROWS = "with rows"
    # Fails or loses data if there is a single row: harmless on a new or empty table.
    IF_NOT_EMPTY = "if not empty"
    # Breaks running code or queues its queries: harmless only on a table created in this run.
    IF_IN_USE = "if in use"

    @property
    def condition(self) -> str:
        """What the message says when lint cannot judge the table."""
        return _CONDITIONS[self]


_CONDITIONS = {
    Bites.ALWAYS: "",
    Bites.WITH_ROWS: "how long it lasts grows with the table's rows; "
    "on a new or empty table it does not matter",
    Bites.IF_NOT_EMPTY: "it bites only when the table has rows; "
    "on a new or empty table it does not matter",
    Bites.IF_IN_USE: "it bites when running code uses the table; "
    "on a table created in the same deploy it does not matter",
}


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
    bites: Bites = Bites.ALWAYS
    # The statement cannot run as written (PostgreSQL or the harness refuses it): silencing
    # the finding would only move the failure to apply time, so a refusal offers no way past it.
    unrunnable: bool = False


@dataclass(frozen=True)
class Hit:
    """A rule matched a statement; the rule may refine the advice for this statement.

    subject: the relation whose table decides whether the hit bites (see Rule.bites);
    missing_ok: the statement says IF EXISTS for it, so a missing subject makes it a no-op.
    """

    message: str
    safe_alternative: str | None = None
    subject: RelationName | None = None
    missing_ok: bool = False


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
