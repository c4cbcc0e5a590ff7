"""The migration tools the benchmarks run side by side: how each wants its migration files
named and written, and the command line that applies them (process start included).

Every tool gets the same steps; only the file format differs. Peers come from the cache that
bench/peers/install.sh fills; one that is not installed carries the reason and is left out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchlib import cached_tool_dir


@dataclass(frozen=True)
class Step:
    """One migration: its SQL, and whether it must run outside a transaction."""

    version: int
    name: str
    up: str
    down: str
    no_transaction: bool = False
    allow: str = ""  # migrate-safe lint rules this file knowingly breaks (its users' directive)


@dataclass(frozen=True)
class Target:
    """Where to apply: a database of the benchmark's LocalPostgres."""

    bindir: Path
    port: int
    password: str
    dbname: str
    user: str = "postgres"

    def uri(self) -> str:
        # No password in any command line: every tool reads PGPASSWORD (libpq, lib/pq, pgx, JDBC
        # through FlywayBench). sslmode=disable because lib/pq defaults to require.
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.dbname}?sslmode=disable"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGPASSWORD": self.password,
            "PGCONNECT_TIMEOUT": "10",
            "BENCH_SQLALCHEMY_URL": self.sqlalchemy_url(),  # read by the generated env.py
        }

    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.dbname}"


Writer = Callable[[Path, list[Step]], None]
Argv = Callable[["Tool", Target, Path], list[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    write: Writer
    argv: Argv
    home: Path | None = None  # install directory in the peers cache
    missing: str | None = None  # why the tool cannot run here
    extra: tuple[str, ...] = field(default=())  # flags appended to the command

    def command(self, target: Target, directory: Path) -> list[str]:
        return [*self.argv(self, target, directory), *self.extra]


def _sql_file(path: Path, *parts: str) -> None:
    path.write_text("\n".join(parts).rstrip() + "\n")


# --- file formats -----------------------------------------------------------------------


def write_updown(directory: Path, steps: list[Step]) -> None:
    """golang-migrate's NNN_name.up.sql/.down.sql, which migrate-safe reads unchanged."""
    for s in steps:
        header = "-- migrate-safe:no-transaction\n" if s.no_transaction else ""
        header += f"-- migrate-safe:allow={s.allow}\n" if s.allow else ""
        _sql_file(directory / f"{s.version:05d}_{s.name}.up.sql", header + s.up)
        _sql_file(directory / f"{s.version:05d}_{s.name}.down.sql", header + s.down)


def write_goose(directory: Path, steps: list[Step]) -> None:
    for s in steps:
        header = "-- +goose NO TRANSACTION\n" if s.no_transaction else ""
        body = (header + "-- +goose Up", s.up, "-- +goose Down", s.down)
        _sql_file(directory / f"{s.version:05d}_{s.name}.sql", *body)


def write_dbmate(directory: Path, steps: list[Step]) -> None:
    for s in steps:
        mode = " transaction:false" if s.no_transaction else ""
        body = (f"-- migrate:up{mode}", s.up, f"-- migrate:down{mode}", s.down)
        _sql_file(directory / f"{s.version:05d}_{s.name}.sql", *body)


def write_flyway(directory: Path, steps: list[Step]) -> None:
    # Flyway detects CREATE INDEX CONCURRENTLY and runs such a file outside a transaction.
    for s in steps:
        _sql_file(directory / f"V{s.version}__{s.name}.sql", s.up)


def write_yoyo(directory: Path, steps: list[Step]) -> None:
    for s in steps:
        header = "-- transactional: false\n" if s.no_transaction else ""
        _sql_file(directory / f"{s.version:05d}_{s.name}.sql", header + s.up)
        _sql_file(directory / f"{s.version:05d}_{s.name}.rollback.sql", header + s.down)


ALEMBIC_INI = """[alembic]
script_location = {directory}
"""

# One transaction per migration, like every other tool here (alembic's default is one for all).
ALEMBIC_ENV = """import os

from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["BENCH_SQLALCHEMY_URL"])
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""

ALEMBIC_REVISION = '''from alembic import op

revision = "r{version:05d}"
down_revision = {down}


def upgrade():
{upgrade}


def downgrade():
    op.execute("""{downsql}""")
'''


def write_alembic(directory: Path, steps: list[Step]) -> None:
    (directory / "versions").mkdir(parents=True, exist_ok=True)
    (directory / "alembic.ini").write_text(ALEMBIC_INI.format(directory=directory))
    (directory / "env.py").write_text(ALEMBIC_ENV)
    previous = "None"
    for s in steps:
        upgrade = f'    op.execute("""{s.up}""")'
        if s.no_transaction:
            upgrade = "    with op.get_context().autocommit_block():\n    " + upgrade
        (directory / "versions" / f"{s.version:05d}_{s.name}.py").write_text(
            ALEMBIC_REVISION.format(
                version=s.version, down=previous, upgrade=upgrade, downsql=s.down
            )
        )
        previous = f'"r{s.version:05d}"'


def write_psql(directory: Path, steps: list[Step]) -> None:
    """Plain files plus two driver scripts for one psql session: one transaction per file
    (the physical limit of applying SQL files this way) and all in one transaction (-1)."""
    per_file, single = [], []
    for s in steps:
        path = directory / f"{s.version:05d}_{s.name}.sql"
        _sql_file(path, s.up)
        include = f"\\i {path}"
        per_file.append(include if s.no_transaction else f"BEGIN;\n{include}\nCOMMIT;")
        single.append(include)
    (directory / "per_file.psql").write_text("\n".join(per_file) + "\n")
    (directory / "single.psql").write_text("\n".join(single) + "\n")


# --- command lines ----------------------------------------------------------------------


def _psql(script: str, *flags: str) -> Argv:
    def argv(tool: Tool, target: Target, directory: Path) -> list[str]:
        return [
            str(target.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *flags,
            "-d", target.uri(), "-f", str(directory / script),
        ]  # fmt: skip

    return argv


def _migrate_safe(tool: Tool, target: Target, directory: Path) -> list[str]:
    exe = Path(sys.executable).with_name("migrate-safe")
    return [
        str(exe), "apply", "--no-backup", "--quiet", "--termination-log", "none",
        "--database-url", target.uri(), "--migrations-dir", str(directory),
        "--log-dir", str(directory.parent / "migrate-safe-logs"),
    ]  # fmt: skip


def _golang_migrate(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    migrate = str(tool.home / "bin" / "migrate")
    return [migrate, "-path", str(directory), "-database", target.uri(), "up"]


def _goose(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    return [
        str(tool.home / "bin" / "goose"),
        "-dir",
        str(directory),
        "postgres",
        target.uri(),
        "up",
    ]


def _dbmate(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    native = tool.home / "node_modules" / "@dbmate" / "linux-x64" / "bin" / "dbmate"
    exe = native if native.exists() else tool.home / "node_modules" / ".bin" / "dbmate"
    return [
        str(exe), "--url", target.uri(), "--migrations-dir", str(directory),
        "--no-dump-schema", "up",
    ]  # fmt: skip


def _flyway(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    jdbc = f"jdbc:postgresql://127.0.0.1:{target.port}/{target.dbname}"
    classpath = f"{tool.home / 'lib'}/*"
    return ["java", "-cp", classpath, "FlywayBench", jdbc, target.user, str(directory)]


def _yoyo(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    yoyo = str(tool.home / "venv" / "bin" / "yoyo")
    url = target.sqlalchemy_url()
    return [yoyo, "apply", "--batch", "--no-config-file", "--database", url, str(directory)]


def _alembic(tool: Tool, target: Target, directory: Path) -> list[str]:
    assert tool.home
    alembic = str(tool.home / "venv" / "bin" / "alembic")
    return [alembic, "-c", str(directory / "alembic.ini"), "upgrade", "head"]


def _peer(name: str, version_key: str, write: Writer, argv: Argv) -> Tool:
    home = cached_tool_dir(name, version_key)
    missing = None if home else "not installed (run bench/peers/install.sh)"
    return Tool(name, write, argv, home=home, missing=missing)


def psql_per_file() -> Tool:
    return Tool("psql, one transaction per file", write_psql, _psql("per_file.psql"))


def psql_single() -> Tool:
    return Tool("psql -1 (all in one transaction)", write_psql, _psql("single.psql", "-1"))


def migrate_safe(name: str = "migrate-safe", *extra: str) -> Tool:
    return Tool(name, write_updown, _migrate_safe, extra=extra)


def peers() -> list[Tool]:
    """Every peer, installed or not (a missing one says why)."""
    return [
        _peer("golang-migrate", "GOLANG_MIGRATE_VERSION", write_updown, _golang_migrate),
        _peer("goose", "GOOSE_VERSION", write_goose, _goose),
        _peer("dbmate", "DBMATE_VERSION", write_dbmate, _dbmate),
        _peer("flyway", "FLYWAY_VERSION", write_flyway, _flyway),
        _peer("yoyo", "YOYO_VERSION", write_yoyo, _yoyo),
        _peer("alembic", "ALEMBIC_VERSION", write_alembic, _alembic),
    ]


def with_flags(tool: Tool, name: str, *extra: str) -> Tool:
    return replace(tool, name=name, extra=(*tool.extra, *extra))
