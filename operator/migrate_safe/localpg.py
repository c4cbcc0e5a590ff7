"""A throwaway PostgreSQL: initdb + pg_ctl from the distribution's packages, on a free
loopback port in a temporary directory. Used by the demo, `verify` and the test suite.

Which server: the bin directory in MIGRATE_SAFE_PG_BINDIR, else the newest of Debian's
/usr/lib/postgresql/*/bin, else the initdb on PATH; `major=` picks the first of those of that
major version. tools/pg_install.sh installs a bin directory of each supported major, with the
client tools (pg_dump, pg_restore, psql) beside the server (docs/compatibility.md).

initdb refuses to run as root, so as root the cluster is created and run as the `postgres`
system user (runuser); as a normal user it runs as that user.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from types import TracebackType

from psycopg.conninfo import make_conninfo

from migrate_safe.errors import ConfigError

SERVICE_USER = "postgres"
FAST_SETTINGS = {
    # A throwaway cluster trades durability for speed; never copy these to a real server.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}


def find_bindir(major: int | None = None) -> Path:
    """The bin directory of a PostgreSQL server: of `major` when given, else the first found."""
    override = os.environ.get("MIGRATE_SAFE_PG_BINDIR")
    candidates = [Path(override)] if override else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(versions)]
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).resolve().parent)
    for candidate in candidates:
        if not ((candidate / "initdb").exists() and (candidate / "pg_ctl").exists()):
            continue
        if major is None or server_major(candidate) == major:
            return candidate
    if major is not None:
        raise ConfigError(
            f"no PostgreSQL {major} server found (looked in MIGRATE_SAFE_PG_BINDIR, "
            f"/usr/lib/postgresql/*/bin and PATH); `tools/pg_install.sh {major}` installs one "
            "and prints the directory to put in MIGRATE_SAFE_PG_BINDIR"
        )
    raise ConfigError(
        "no PostgreSQL server found (initdb/pg_ctl); install Debian's `postgresql` package "
        "(.ci/bootstrap does) or set MIGRATE_SAFE_PG_BINDIR"
    )


_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


@cache
def program_major(program: Path) -> int | None:
    """The major version a PostgreSQL program reports (`postgres --version`,
    `pg_dump --version`, …), or None when it does not run."""
    try:
        done = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return version_major(done.stdout) if done.returncode == 0 else None


def version_major(text: str) -> int | None:
    """The major version in a program's `--version` line: `pg_dump (PostgreSQL) 17.2` → 17."""
    match = _VERSION.search(text)
    return int(match.group(1)) if match else None


def server_major(bindir: Path) -> int | None:
    return program_major(bindir / "postgres")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """Context manager: `with LocalPostgres() as pg: pg.url("mydb")`; `LocalPostgres(major=17)`
    or `LocalPostgres(bindir=...)` chooses the server (see the module's docstring)."""

    def __init__(
        self,
        *,
        keep: bool = False,
        settings: dict[str, str] | None = None,
        bindir: Path | None = None,
        major: int | None = None,
    ) -> None:
        self.bindir = bindir or find_bindir(major)
        found = server_major(self.bindir)
        if found is None or (major is not None and found != major):
            wanted = f"PostgreSQL {major}" if major else "PostgreSQL"
            raise ConfigError(
                f"{self.bindir / 'postgres'}: not a {wanted} server (its --version "
                f"reports {f'major {found}' if found else 'nothing'})"
            )
        self.major = found
        self.keep = keep
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.as_service_user = os.geteuid() == 0
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.root = Path()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="migrate-safe-pg-"))
        self.port = free_port()
        if self.as_service_user:
            shutil.chown(self.root, user=SERVICE_USER)
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_service_user:
            shutil.chown(pwfile, user=SERVICE_USER)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )
        pwfile.unlink()
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} {options}",
            "start",
        )
        return self

    def stop(self) -> None:
        if not self.root.name:
            return
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- use -----------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str = "postgres", *, user: str = "postgres") -> str:
        """A DSN over TCP with the generated password (treat it as a secret)."""
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, user=user, password=self.password, dbname=dbname
        )

    def uri(self, dbname: str = "postgres") -> str:
        """The same as url() in postgresql:// form, as most tools and users write it."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def bin(self, program: str) -> str:
        return str(self.bindir / program)

    def _run(self, program: str, *args: str) -> None:
        command = [self.bin(program), *args]
        if self.as_service_user:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise ConfigError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}"
            )
