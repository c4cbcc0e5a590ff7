"""`migrate-safe demo` runs from a wheel or the image, which have no examples/ directory beside
them: its migrations ship inside the package, as a copy of examples/migrations kept equal."""

from __future__ import annotations

from pathlib import Path

from migrate_safe.commands.demo import demo_migrations

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "migrations"


def test_the_packaged_demo_migrations_are_the_examples() -> None:
    with demo_migrations() as packaged:
        shipped = {path.name: path.read_bytes() for path in packaged.glob("*.sql")}
    examples = {path.name: path.read_bytes() for path in EXAMPLES.glob("*.sql")}
    assert shipped == examples, "copy examples/migrations to operator/migrate_safe/demo_migrations"
