"""What the database says about the relations the linted files name, read by the harness
before the run (`migrate_safe.catalog`) and handed to lint as an immutable value.

Lint stays pure: it never queries; a rule's finding is judged against these facts (is the
table new, empty, small, absent?) only when the caller passes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class RelationName:
    """A relation as a statement names it: schema-qualified or bare (then the session's
    search_path decides which one it is). Names are as PostgreSQL folds them."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.schema or "", self.name)


@dataclass(frozen=True)
class TableSize:
    """How big the table behind a relation is now (summed over partitions)."""

    estimated_rows: int
    rows_from_size: bool  # never analysed: an upper bound computed from its pages
    heap_bytes: int
    total_bytes: int  # with indexes and TOAST

    @property
    def empty(self) -> bool:
        """No data page at all: certain, unlike a row estimate."""
        return self.heap_bytes == 0


@dataclass(frozen=True)
class RelationFacts:
    """One relation that exists: its schema-qualified name, its kind ("table", "index", …),
    the table whose rows matter for it (an index's table, else itself) and that table's
    size, or None when it has no storage lint can judge (a view, a foreign table) or when
    another session held it locked exclusively (`locked`), so measuring it would have
    waited."""

    relation: str
    kind: str
    table: str
    size: TableSize | None
    locked: bool = False


def _no_relations() -> Mapping[RelationName, RelationFacts | None]:
    return MappingProxyType({})


@dataclass(frozen=True)
class TableFacts:
    """The catalog before the run, for every name the harness looked up: RelationFacts when
    the relation exists, None when it does not. A name not looked up is unknown. `note` says
    why facts are missing (e.g. a size lookup that met a lock), for the findings it affects."""

    relations: Mapping[RelationName, RelationFacts | None] = field(default_factory=_no_relations)
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "relations", MappingProxyType(dict(self.relations)))

    def knows(self, name: RelationName) -> bool:
        return name in self.relations

    def get(self, name: RelationName) -> RelationFacts | None:
        return self.relations.get(name)

    def exists(self, name: RelationName) -> bool | None:
        """True or False when the catalog was asked about `name`, None when unknown."""
        return self.get(name) is not None if self.knows(name) else None
