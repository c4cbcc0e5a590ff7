"""wait: an application's init container blocks until the ledger reaches a version. It needs
only a database login, no Kubernetes RBAC."""

from __future__ import annotations

import time
from dataclasses import dataclass

from migrate_safe.commands.common import describe
from migrate_safe.config import Settings
from migrate_safe.errors import ConfigError, MigrationFailed
from migrate_safe.ledger import Ledger
from migrate_safe.options import WaitOptions
from migrate_safe.outcome import LedgerOutcome, RunReport
from migrate_safe.report import Reporter
from migrate_safe.session import connect


def wait(options: WaitOptions, settings: Settings, report: Reporter, run: RunReport) -> None:
    """Poll the ledger; say where it is whenever that changes (the init container's log)."""
    describe(settings, run)
    deadline = time.monotonic() + options.timeout
    announced, seen = False, None
    while True:
        now = _ledger(settings)
        if now is not None and now.reached(options.version):
            run.ledger = LedgerOutcome(now.version)
            report.progress(f"ledger at {now.version}, at or past {options.version}")
            return
        if not announced or now != seen:
            where = now.describe() if now else "the database cannot be reached yet"
            report.progress(f"waiting for the ledger to reach version {options.version} ({where})")
            announced, seen = True, now
        if time.monotonic() >= deadline:
            raise MigrationFailed(
                f"ledger did not reach version {options.version} within {options.timeout:g}s"
            )
        time.sleep(options.interval)


@dataclass(frozen=True)
class _Ledger:
    version: int | None
    dirty: bool

    def reached(self, version: int) -> bool:
        return self.version is not None and self.version >= version and not self.dirty

    def describe(self) -> str:
        where = "empty" if self.version is None else f"at version {self.version}"
        return "ledger " + where + (", dirty" if self.dirty else "")


def _ledger(settings: Settings) -> _Ledger | None:
    """Where the ledger is; None while the database cannot be reached: the application
    waits, it does not crash."""
    try:
        with connect(settings, "wait") as conn:
            rows = Ledger(conn, settings.ledger_schema).applied()
    except ConfigError:
        return None
    return _Ledger(rows[-1].version if rows else None, any(row.dirty for row in rows))
