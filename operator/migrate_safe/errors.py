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
    """Base class: a failure the CLI reports as one clear line plus details."""

    exit_code: ExitCode = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = details or {}


class ConfigError(MigrateSafeError):
    """Bad flags, unreachable database, unreadable or malformed migration source."""

    exit_code = ExitCode.CONFIG_ERROR


class SourceError(ConfigError):
    """A migration file that cannot be used; the message names the file."""


class PreflightFailed(MigrateSafeError):
    exit_code = ExitCode.PREFLIGHT_FAILED


class MigrationFailed(MigrateSafeError):
    exit_code = ExitCode.MIGRATION_FAILED


class PostflightFailed(MigrateSafeError):
    exit_code = ExitCode.POSTFLIGHT_FAILED


class RollbackFailed(MigrateSafeError):
    exit_code = ExitCode.ROLLBACK_FAILED
