"""Every rule family; importing this package fills the registry."""

from migrate_safe.lint.rules import (
    columns,
    constraints,
    destructive,
    files,
    hygiene,
    indexes,
    locking,
    transactions,
)

__all__ = [
    "columns",
    "constraints",
    "destructive",
    "files",
    "hygiene",
    "indexes",
    "locking",
    "transactions",
]
