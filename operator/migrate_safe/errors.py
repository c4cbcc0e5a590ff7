"""Error classes, each carrying the exit code the CLI returns for it.

Exit codes are a contract with scripts and with the operator's Jobs:
0 ok · 1 preflight failed · 2 migration failed · 3 postflight failed ·
4 rollback failed · 5 config error.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PREFLIGHT_FAILED = 1
    MIGRATION_FAILED = 2
    POSTFLIGHT_FAILED = 3
    ROLLBACK_FAILED = 4
    CONFIG_ERROR = 5


class MigrateSafeError(Exception):
    """Base class: a failure the CLI reports as one clear line plus details.

    `transient`: the same run may succeed later without anyone changing anything (the
    database could not be reached, a lock stayed taken); the operator retries those with
    backoff instead of stalling.
    """

    exit_code: ExitCode = ExitCode.MIGRATION_FAILED
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, object] | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = details or {}
        if transient is not None:
            self.transient = transient


class ConfigError(MigrateSafeError):
    """Bad flags, unreachable database, unreadable or malformed migration source."""

    exit_code = ExitCode.CONFIG_ERROR


class SourceError(ConfigError):
    """A migration file that cannot be used; the message names the file."""


class DatabaseUnavailable(ConfigError):
    """The database cannot be reached now: DNS, a refused connection, authentication, a
    server starting or shutting down. Exit 5 like any config error, but worth retrying."""

    transient = True


# SQLSTATE classes and codes a retry can outlive: connection exceptions, a server shutting
# down or not yet accepting connections, too many connections, lock timeouts, deadlocks,
# serialization failures.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "57P")
_TRANSIENT_SQLSTATES = {"53300", "55P03", "40001", "40P01"}


def transient_sqlstate(sqlstate: str | None) -> bool:
    """Whether a database error that escaped a command is worth retrying as it is. A lost
    connection has no SQLSTATE at all: that counts as transient too."""
    if sqlstate is None:
        return True
    return sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES) or sqlstate in _TRANSIENT_SQLSTATES


class PreflightFailed(MigrateSafeError):
    exit_code = ExitCode.PREFLIGHT_FAILED


class MigrationFailed(MigrateSafeError):
    exit_code = ExitCode.MIGRATION_FAILED


class PostflightFailed(MigrateSafeError):
    exit_code = ExitCode.POSTFLIGHT_FAILED


class RollbackFailed(MigrateSafeError):
    exit_code = ExitCode.ROLLBACK_FAILED
