"""Does a finding bite here? Judged by the table it names (Hit.subject) and the rule's
condition (Rule.bites), against the catalog facts when lint runs against a database.

Against a database a finding becomes info, with the reason, when its table is created
earlier in this run (new: empty and unused), is empty or within the small-table limits (for
the rules that only bite with rows), or does not exist and the statement says IF EXISTS.
Otherwise it keeps its severity and says what lint found. Without a database it keeps its
severity and says under which condition it bites.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migrate_safe.lint.config import SizeLimits
from migrate_safe.lint.context import Creation, FileContext
from migrate_safe.lint.facts import RelationFacts, RelationName, TableSize
from migrate_safe.lint.model import Bites, Hit, Rule

# Marks a finding kept because its table is over a size limit (a refusal names the setting).
SIZE_LIMIT_NOTE = ", over [lint] "


@dataclass(frozen=True)
class Verdict:
    harmless: bool  # the finding becomes info
    note: str = ""  # appended to the message: why, with the figures

    def message(self, message: str) -> str:
        return f"{message}; {self.note}" if self.note else message


def judge(rule: Rule, hit: Hit, context: FileContext, limits: SizeLimits) -> Verdict:
    if rule.bites is Bites.ALWAYS:
        return Verdict(False)
    subject = hit.subject
    creation = context.creation(subject) if subject is not None else None
    facts = context.tables
    if facts is None:
        return Verdict(False, _without_database(rule.bites, hit, creation))
    if subject is not None and creation is not None:
        return Verdict(True, f"{_created(subject, creation)} in this run: it is empty and unused")
    if subject is None or not facts.knows(subject):
        return Verdict(False, _joined(rule.bites.condition, facts.note))
    found = facts.get(subject)
    if found is not None:
        return _by_size(rule.bites, found, limits)
    if hit.missing_ok:
        return Verdict(True, f"{subject} does not exist, so IF EXISTS makes this a no-op")
    return Verdict(False, f"{subject} is not in the database yet; {rule.bites.condition}")


def _without_database(bites: Bites, hit: Hit, creation: Creation | None) -> str:
    notes = [bites.condition]
    if hit.subject is not None and creation is not None:
        notes.append(f"{_created(hit.subject, creation)}: where both are pending it is new")
    if hit.subject is not None and hit.missing_ok:
        notes.append(f"if {hit.subject} does not exist, IF EXISTS makes this a no-op")
    return "; ".join(notes)


def _by_size(bites: Bites, found: RelationFacts, limits: SizeLimits) -> Verdict:
    if bites is Bites.IF_IN_USE:
        return Verdict(False)  # it exists, so running code may use it: size says nothing
    size = found.size
    if found.locked:
        return Verdict(
            False, f"size of {found.table} unknown: another session holds it locked exclusively"
        )
    if size is None:
        return Verdict(False, f"lint cannot measure {found.kind} {found.relation}")
    if size.empty:
        return Verdict(True, f"{found.table} is empty (no data pages)")
    if bites is Bites.IF_NOT_EMPTY:
        return Verdict(False, f"{found.table} holds {figures(size)}")
    over = limits.exceeded_by(size.estimated_rows, size.total_bytes)
    if over:
        return Verdict(False, f"{found.table} holds {figures(size)}{SIZE_LIMIT_NOTE}{over}")
    return Verdict(
        True,
        f"{found.table} is small: {figures(size)}, within [lint] "
        f"small_table_rows = {limits.rows} and small_table_bytes = {limits.bytes}",
    )


def _created(subject: RelationName, creation: Creation) -> str:
    return f"{creation.kind} {subject.name} is created by {Path(creation.origin).name}"


def _joined(*notes: str | None) -> str:
    return "; ".join(note for note in notes if note)


def figures(size: TableSize) -> str:
    rows = (
        f"at most {size.estimated_rows:,} rows (never analysed: bound from its size)"
        if size.rows_from_size
        else f"about {size.estimated_rows:,} rows"
    )
    return f"{rows}, {human_bytes(size.total_bytes)}"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
