"""Backups before DDL: pg_dump (custom format, or gzip'd plain SQL), verified, checksummed,
with a manifest, a `latest` pointer and retention; and restore from them.

The dump finishes before any DDL lock is taken: pg_dump holds ACCESS SHARE on every table
until it ends, so an ALTER queued behind it would be the outage we exist to prevent.
The password reaches pg_dump through PGPASSWORD, never on a command line `ps` can read.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrate_safe.catalog import application_schema
from migrate_safe.config import Redactor, describe_dsn
from migrate_safe.errors import ConfigError, PreflightFailed, RollbackFailed
from migrate_safe.localpg import program_major, version_major

LATEST = "latest-backup.txt"
FORMATS = {"custom": ".dump", "plain-gzip": ".sql.gz"}
PLAIN_HEADER = b"-- PostgreSQL database dump"


class BackupFailed(PreflightFailed):
    """No verified backup: nothing may be applied (exit 1 from the apply pipeline)."""


class RestoreFailed(RollbackFailed):
    """A restore that could not be done or did not finish: the recovery path failed (exit 4)."""


@dataclass(frozen=True)
class Manifest:
    file: str
    format: str
    database: str
    server_version: str
    ledger_version: int | None
    size_bytes: int
    sha256: str
    duration_ms: int
    created_at: str
    wal_lsn: str | None
    restore_point: str | None
    pg_dump_version: str
    fingerprint: str | None
    # Orders backups by creation for retention (names carry only the second); manifests
    # written before it existed count as 0, older than any that has one.
    sequence: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Raises OSError, ValueError or TypeError when the file is no manifest."""
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ClientProgram:
    path: str
    major: int


def client_tool(program: str, at_least: int) -> ClientProgram:
    """The pg_dump/pg_restore/psql to run: the one in MIGRATE_SAFE_PG_BINDIR when it is set,
    else the lowest major version ≥ `at_least` (the server's, or that of the pg_dump that
    wrote a backup) on PATH and in /usr/lib/postgresql/*/bin. pg_dump refuses a server newer
    than itself and pg_restore an archive from a newer pg_dump; the closest major writes what
    the server reads back most surely."""
    found = _installed_clients(program)
    fitting = [client for client in found if client.major >= at_least]
    if fitting:
        return min(fitting, key=lambda client: client.major)
    way_out = (
        f"install the PostgreSQL {at_least} client tools or newer (Debian: "
        f"postgresql-client-{at_least}; the image: docs/compatibility.md) or point "
        "MIGRATE_SAFE_PG_BINDIR at their bin directory"
    ) + ("; or pass --no-backup" if program == "pg_dump" else "")
    if found:
        have = ", ".join(f"{c.path} is {c.major}" for c in found)
        raise BackupFailed(
            f"{program} of PostgreSQL {at_least} or newer is needed ({program} refuses to read "
            f"what a newer PostgreSQL wrote) and only older ones are installed: {have}; " + way_out
        )
    raise BackupFailed(f"{program} not found; {way_out}")


def _installed_clients(program: str) -> list[ClientProgram]:
    bindir = os.environ.get("MIGRATE_SAFE_PG_BINDIR")
    if bindir:  # chosen on purpose: never silently another installation
        chosen = Path(bindir) / program
        major = _major(chosen)
        return [ClientProgram(str(chosen), major)] if major is not None else []
    candidates: list[Path] = []
    on_path = shutil.which(program)
    if on_path:
        candidates.append(Path(on_path))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [version / "bin" / program for version in versions]
    found: dict[Path, ClientProgram] = {}
    for candidate in candidates:
        major = _major(candidate)
        if major is not None:
            found.setdefault(candidate.resolve(), ClientProgram(str(candidate), major))
    return list(found.values())


def _major(program: Path) -> int | None:
    return program_major(program) if program.exists() else None


def client_env(dsn: str) -> tuple[str, dict[str, str]]:
    """A password-free DSN for the command line and the environment carrying the password."""
    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    env = dict(os.environ)
    password = parts.pop("password", None)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo("", **parts), env


def _run(command: list[str], env: dict[str, str], redact: Redactor, **kwargs: Any) -> str:
    done = subprocess.run(command, env=env, capture_output=True, check=False, **kwargs)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace") if isinstance(done.stderr, bytes) else ""
        raise BackupFailed(f"{Path(command[0]).name} failed: {redact(stderr.strip()[-1500:])}")
    return done.stdout.decode(errors="replace") if isinstance(done.stdout, bytes) else ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BackupJob:
    conn: psycopg.Connection[Any]
    dsn: str
    directory: Path
    format: str
    retention: int
    lock_wait: float
    redact: Redactor
    run_id: str

    def run(self, ledger_version: int | None, fingerprint: str | None) -> Manifest:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format}: use one of {', '.join(FORMATS)}")
        self._prepare_directory()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self.directory / f"backup-{stamp}-{self.run_id}{FORMATS[self.format]}"
        pg_dump = client_tool("pg_dump", self.conn.info.server_version // 10000)
        try:
            manifest = self._take(pg_dump, path, ledger_version, fingerprint)
        except BaseException as error:
            # Half-written files are no backup; removing them must not hide why they failed.
            for leftover in (path, manifest_path(path)):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            raise _explained(error, self.directory) from None
        self._apply_retention()
        return manifest

    def _take(
        self,
        pg_dump: ClientProgram,
        path: Path,
        ledger_version: int | None,
        fingerprint: str | None,
    ) -> Manifest:
        """Dump, read back, describe in a manifest, then point `latest` at it."""
        wal_lsn, restore_point = self._mark_wal()
        started = time.monotonic()
        self._dump(pg_dump.path, path)
        self._verify(path, pg_dump.major)
        manifest = Manifest(
            file=path.name,
            format=self.format,
            database=describe_dsn(self.dsn),
            server_version=self.conn.info.parameter_status("server_version") or "",
            ledger_version=ledger_version,
            size_bytes=path.stat().st_size,
            sha256=sha256_file(path),
            duration_ms=round((time.monotonic() - started) * 1000),
            created_at=datetime.now(UTC).isoformat(),
            wal_lsn=wal_lsn,
            restore_point=restore_point,
            pg_dump_version=_run(
                [pg_dump.path, "--version"], dict(os.environ), self.redact
            ).strip(),
            fingerprint=fingerprint,
            sequence=1 + max((m.sequence for _, m in stored_backups(self.directory)), default=0),
        )
        _write_private(manifest_path(path), json.dumps(manifest.as_dict(), indent=2) + "\n")
        _write_private(self.directory / LATEST, path.name + "\n")
        return manifest

    def _prepare_directory(self) -> None:
        """Refuse, before pg_dump starts, a directory that cannot take a file: not creatable,
        not a directory, a read-only mount, no permission."""
        where = f"--backup-dir / [backup] dir {self.directory}"
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"{where}: not a directory; nothing was applied")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryFile(dir=self.directory):
                pass  # a file can be created there (root ignores modes, not read-only mounts)
        except OSError as error:
            raise ConfigError(
                f"{where}: cannot write there ({error.strerror}); point it at a writable "
                "directory or pass --no-backup; nothing was applied"
            ) from None

    def _mark_wal(self) -> tuple[str | None, str | None]:
        """Record the WAL position and a named restore point, so point-in-time recovery has a
        target when the server archives WAL. Neither is possible on a standby or without the
        privilege; the backup goes on without them."""
        name = f"migrate-safe-{self.run_id}"
        try:
            row = self.conn.execute(
                "SELECT pg_current_wal_lsn()::text, pg_create_restore_point(%s)::text", [name]
            ).fetchone()
        except psycopg.Error:
            row = None
        if row is None:
            return None, None
        wal_lsn, _restore_point = row
        return str(wal_lsn), name

    def _dump(self, pg_dump: str, path: Path) -> None:
        try:
            self._run_dump(pg_dump, path)
        except BackupFailed as error:
            raise BackupFailed(self._dump_problem(str(error))) from None

    def _dump_problem(self, message: str) -> str:
        """pg_dump's failure as the user acts on it: a lock it gave up on names the flag."""
        if "LOCK TABLE" in message and "timeout" in message:
            return (
                f"backup: a table stayed locked by another session for {self.lock_wait:g}s "
                f"(--backup-lock-wait); nothing was applied: {message}"
            )
        return f"backup: {message}; nothing was applied"

    def _run_dump(self, pg_dump: str, path: Path) -> None:
        dsn, env = client_env(self.dsn)
        # A dump queued behind another session's lock would wait forever; give up instead.
        common = ["--dbname", dsn, f"--lock-wait-timeout={round(self.lock_wait * 1000)}"]
        if self.format == "custom":
            _run([pg_dump, "--format=custom", f"--file={path}", *common], env, self.redact)
            path.chmod(0o600)
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb") as out,
            # Leaving this block closes pg_dump's pipe and waits, also when a write fails.
            subprocess.Popen(
                [pg_dump, "--format=plain", *common],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ) as process,
        ):
            assert process.stdout is not None and process.stderr is not None
            shutil.copyfileobj(process.stdout, out)
            stderr = process.stderr.read().decode(errors="replace")
            if process.wait() != 0:
                raise BackupFailed(f"pg_dump failed: {self.redact(stderr.strip()[-1500:])}")

    def _verify(self, path: Path, dumped_by: int) -> None:
        """A dump that cannot be read back is no backup: fail before anything is applied."""
        if not path.exists() or path.stat().st_size == 0:
            raise BackupFailed(f"{path}: the dump is empty")
        if self.format == "custom":
            pg_restore = client_tool("pg_restore", dumped_by).path
            listing = _run([pg_restore, "--list", str(path)], dict(os.environ), self.redact)
            if "; Archive created at" not in listing or "Format: CUSTOM" not in listing:
                raise BackupFailed(f"{path}: pg_restore --list does not read it as an archive")
            return
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4096)
                while handle.read(1 << 20):
                    pass  # reading to the end checks the gzip CRC
        except (OSError, EOFError) as error:
            raise BackupFailed(f"{path}: gzip integrity check failed: {error}") from None
        if PLAIN_HEADER not in head:
            raise BackupFailed(f"{path}: not a pg_dump SQL file (header missing)")

    def _apply_retention(self) -> None:
        apply_retention(self.directory, self.retention)


def stored_backups(directory: Path) -> list[tuple[Path, Manifest]]:
    """The backups of a directory (manifest path and manifest), oldest first: by sequence,
    then creation time. Names do not order them: two backups within one second share the
    name's time stamp and differ by a random run id."""
    found: list[tuple[Path, Manifest]] = []
    for path in directory.glob("backup-*.json"):
        # A manifest that cannot be read is no backup to count, order or remove.
        with contextlib.suppress(OSError, ValueError, TypeError):
            found.append((path, Manifest.read(path)))
    return sorted(found, key=lambda entry: (entry[1].sequence, entry[1].created_at))


def apply_retention(directory: Path, keep: int) -> None:
    """Remove all but the `keep` newest backups (keep ≥ 1: never the one just taken)."""
    backups = stored_backups(directory)
    for stale, manifest in backups[: max(0, len(backups) - keep)]:
        # Housekeeping after a verified backup: what cannot be removed stays where it is
        # rather than fail the run.
        with contextlib.suppress(OSError):
            (directory / manifest.file).unlink(missing_ok=True)
            stale.unlink()


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + ".json")


def _write_private(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a full volume never leaves a truncated
    manifest or `latest` pointer that would send a restore to the wrong backup."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


_NO_SPACE = os.strerror(errno.ENOSPC)


def _explained(error: BaseException, directory: Path) -> BaseException:
    """A failed write as a BackupFailed naming the directory; anything else unchanged."""
    if isinstance(error, OSError):
        return BackupFailed(_write_problem(directory, error))
    if isinstance(error, BackupFailed) and _NO_SPACE in error.message:
        # pg_dump writes the custom format itself: only its message tells the volume is full.
        full = _write_problem(directory, OSError(errno.ENOSPC, _NO_SPACE))
        return BackupFailed(f"{full} ({error.message})")
    return error


def _write_problem(directory: Path, error: OSError) -> str:
    """What went wrong writing a backup, naming the directory and the way out."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"backup directory {directory}: the volume is full ({error.strerror}); free space "
            "there or point --backup-dir / [backup] dir elsewhere; nothing was applied"
        )
    culprit = f" ({Path(error.filename).name})" if error.filename else ""
    return f"backup directory {directory}: {error.strerror}{culprit}; nothing was applied"


def resolve_backup(directory: Path, choice: str) -> Path:
    """`latest` (the pointer in the backup dir) or a path. A backup that is not there fails
    the restore (exit 4): it is a recovery path, and the recovery cannot happen."""
    if choice != "latest":
        path = Path(choice)
        if not path.is_file():
            raise RestoreFailed(f"--backup {choice}: no such file; nothing was restored")
        return path
    pointer = directory / LATEST
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise RestoreFailed(
            f"--backup latest: {pointer} not found (no backup taken yet in --backup-dir "
            f"{directory}?); nothing was restored"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise RestoreFailed(f"--backup latest: cannot read {pointer}: {error}") from None
    path = directory / name
    if not name or Path(name).name != name or not path.is_file():
        raise RestoreFailed(
            f"--backup latest: {pointer} names {name!r}, which is not a backup file in "
            f"{directory}; pass --backup PATH; nothing was restored"
        )
    return path


# Drops every application object before the backup's script recreates them, so objects a bad
# migration added do not survive a restore. Schemas other than public go whole; public stays
# (initdb owns it and pg_dump does not recreate it) and loses its contents. Extension members
# are left to their extension.
_CLEAR_USER_OBJECTS = sql.SQL(r"""
DO $clear$
DECLARE
    target record;
BEGIN
    FOR target IN
        SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS command
        FROM pg_namespace n
        WHERE {application} AND n.nspname <> 'public'
        UNION ALL
        SELECT format('DROP %s IF EXISTS public.%I CASCADE',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     ELSE 'TABLE' END, c.relname)
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = c.oid AND d.deptype IN ('e', 'i', 'a'))
        UNION ALL
        SELECT format('DROP ROUTINE IF EXISTS public.%I(%s) CASCADE', p.proname,
                      pg_get_function_identity_arguments(p.oid))
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT format('DROP TYPE IF EXISTS public.%I CASCADE', t.typname)
        FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'c')
          AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE target.command;
    END LOOP;
END
$clear$;
""").format(application=application_schema())


def has_user_objects(conn: psycopg.Connection[Any]) -> bool:
    """Whether the database holds a table, view or sequence of its own (the ledger's count)."""
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE {application} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))"
    ).format(application=application_schema())
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def verify_checksum(path: Path, *, allow_missing: bool) -> Manifest | None:
    """The manifest beside a backup, after checking the file still has its sha256. Without a
    manifest there is nothing to check the file against: refused unless `allow_missing`."""
    manifest_file = manifest_path(path)
    if not manifest_file.exists():
        if allow_missing:
            return None
        raise RestoreFailed(
            f"{path}: no manifest ({manifest_file.name}) beside it, so its sha256 cannot be "
            "checked; nothing was restored (restore it anyway with --allow-missing-manifest)"
        )
    try:
        manifest = Manifest.read(manifest_file)
    except (OSError, ValueError, TypeError) as error:
        raise RestoreFailed(
            f"{manifest_file}: not a readable migrate-safe manifest ({error}); nothing was restored"
        ) from None
    try:
        actual = sha256_file(path)
    except OSError as error:
        raise RestoreFailed(f"{path}: cannot be read ({error.strerror})") from None
    if actual != manifest.sha256:
        raise RestoreFailed(
            f"{path}: sha256 {actual} differs from its manifest ({manifest.sha256}); "
            "nothing was restored"
        )
    return manifest


def restore(
    conn: psycopg.Connection[Any],
    dsn: str,
    path: Path,
    redact: Redactor,
    *,
    dumped_by: str | None = None,
) -> None:
    """Replace the database's application objects with the backup's, in one transaction:
    a failure anywhere leaves the database as it was. `dumped_by` is the manifest's
    pg_dump version: the pg_restore and psql that read the backup are at least as new."""
    server = conn.info.server_version // 10000
    needed = max(server, version_major(dumped_by or "") or server)
    try:
        script = _for_server(_restore_script(path, needed, redact), server)
        client_dsn, env = client_env(dsn)
        psql = [client_tool("psql", needed).path, "--no-psqlrc", "--quiet"]
        psql += ["--single-transaction", "-v", "ON_ERROR_STOP=1", "--dbname", client_dsn]
        clear = _CLEAR_USER_OBJECTS.as_string(conn).encode()
        _run(psql, env, redact, input=clear + script)
    except BackupFailed as error:
        raise RestoreFailed(
            f"restore of {path.name} failed; the database is unchanged: {error.message}"
            + _client_hint(error.message)
        ) from None


def _restore_script(path: Path, dumped_by: int, redact: Redactor) -> bytes:
    """The backup as one SQL script (pg_restore renders a custom-format archive)."""
    if not path.name.endswith(".sql.gz"):
        command = [client_tool("pg_restore", dumped_by).path, "--file=-", str(path)]
        return _run(command, dict(os.environ), redact).encode()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as error:
        raise RestoreFailed(f"{path}: not a readable gzip file ({error})") from None


# pg_dump 17 and later write this into the prolog of every script, whatever the server it
# dumped; a server before 17 has no such setting, and the restore would stop on it.
_TRANSACTION_TIMEOUT = b"\nSET transaction_timeout = 0;\n"
# Where the prolog ends: the first object of the dump.
_FIRST_OBJECT = b"\n-- Name: "


def _for_server(script: bytes, server_major: int) -> bytes:
    """The script without the prolog settings the server does not know."""
    if server_major >= 17:
        return script
    end = script.find(_FIRST_OBJECT)
    end = len(script) if end < 0 else end
    return script[:end].replace(_TRANSACTION_TIMEOUT, b"\n", 1) + script[end:]


# What a client older than the backup says, and what to do about it.
_TOO_OLD_CLIENT = {
    "unsupported version": "pg_restore is older than the pg_dump that wrote the backup",
    "invalid command \\restrict": "psql is older than the pg_dump that wrote the backup",
}


def _client_hint(message: str) -> str:
    for symptom, cause in _TOO_OLD_CLIENT.items():
        if symptom in message:
            return (
                f" ({cause}: install client tools at least as new as the manifest's "
                "pg_dump_version, or point MIGRATE_SAFE_PG_BINDIR at them)"
            )
    return ""
