"""Settings from flags and environment; DSN parsing and redaction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from migrate_safe.errors import ConfigError

DEFAULT_LEDGER_SCHEMA = "migrate_safe"
DEFAULT_MIGRATIONS_DIR = "./migrations"
DEFAULT_LOG_DIR = "./logs"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def validate_identifier(name: str, *, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{what}: {name!r} is not a plain lower-case SQL identifier")
    return name


def validate_ledger_schema(name: str) -> str:
    """The ledger needs a schema of its own: the fingerprint and the drift check skip the
    ledger's schema, so a shared one (`public`) would hide every application change."""
    what = "--ledger-schema / MIGRATE_SAFE_LEDGER_SCHEMA"
    validate_identifier(name, what=what)
    if name in ("public", "information_schema") or name.startswith("pg_"):
        raise ConfigError(
            f"{what}: {name!r} is not a schema the ledger may own: the fingerprint and the "
            f"drift check skip the ledger's schema, so everything else in {name} would go "
            f"unseen; use a schema of its own such as {DEFAULT_LEDGER_SCHEMA} (the default)"
        )
    return name


class Redactor:
    """Removes secrets (the DSN's password) from any text before it leaves the process."""

    _URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)@")
    _KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add_secret(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        text = self._URL_PASSWORD.sub(r"\1***@", text)
        text = self._KV_PASSWORD.sub(r"\1***", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def describe_dsn(dsn: str) -> str:
    """A password-free description of where a DSN points: 'user@host:port/dbname'."""
    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg raises ProgrammingError with the raw text
        raise ConfigError("--database-url / DATABASE_URL: not a valid PostgreSQL DSN") from exc
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = parts.get("user") or "?"
    dbname = parts.get("dbname") or user
    return f"{user}@{host}:{port}/{dbname}"


def dsn_password(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(password) if password else None


@dataclass(frozen=True)
class ApplyPolicy:
    """How apply and rollback wait: short lock timeouts that escalate across bounded retries."""

    lock_timeout: float = 0.5
    lock_timeout_max: float = 10.0
    lock_retries: int = 10
    retry_backoff: float = 0.25
    retry_backoff_max: float = 10.0
    statement_timeout: float = 3600.0
    advisory_lock_wait: float = 60.0
    quiet_wait: float = 30.0

    def lock_timeout_for(self, attempt: int, initial: float | None = None) -> float:
        """lock_timeout of attempt 1, 2, …: doubling from the initial value up to the cap."""
        start = initial if initial is not None else self.lock_timeout
        cap = max(self.lock_timeout_max, start)
        return float(min(start * 2 ** (attempt - 1), cap))

    def backoff_for(self, attempt: int) -> float:
        """Pause after failed attempt N before the next one."""
        return float(min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max))


@dataclass
class Settings:
    """Everything a command needs, resolved from flags and environment."""

    database_url: str | None
    migrations_dir: Path
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA
    log_dir: Path = Path(DEFAULT_LOG_DIR)
    termination_log: Path | None = None
    allow_missing_down: bool = False
    policy: ApplyPolicy = field(default_factory=ApplyPolicy)
    redact: Redactor = field(default_factory=Redactor)

    def __post_init__(self) -> None:
        validate_ledger_schema(self.ledger_schema)
        if self.database_url:
            self.redact.add_secret(dsn_password(self.database_url))

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("no database: pass --database-url or set DATABASE_URL")
        return self.database_url
