"""Backups before DDL, and restore: verified files, manifests, retention, exact schema back."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import pytest

from migrate_safe import backup
from migrate_safe.backup import BackupJob
from migrate_safe.config import Redactor
from migrate_safe.fingerprint import fingerprint
from migrate_safe.localpg import LocalPostgres
from tests.conftest import Cli, Database

pytestmark = pytest.mark.db


def schema_hash(db: Database) -> str:
    with db.connect() as conn:
        return fingerprint(conn, "migrate_safe").hash


def three_versions(cli: Cli) -> None:
    cli.write(1, "customers", "CREATE TABLE customers (id int PRIMARY KEY, email text);",
              "DROP TABLE customers;")  # fmt: skip
    cli.write(2, "seed", "INSERT INTO customers VALUES (1, 'a@example.com');",
              "DELETE FROM customers;")  # fmt: skip
    cli.write(3, "orders", "CREATE TABLE orders (id int, customer_id int REFERENCES customers);",
              "DROP TABLE orders;")  # fmt: skip


@pytest.mark.parametrize(("fmt", "suffix"), [("custom", ".dump"), ("plain-gzip", ".sql.gz")])
def test_backup_is_private_verified_and_described_by_a_manifest(
    cli: Cli, db: Database, pg: LocalPostgres, fmt: str, suffix: str
) -> None:
    three_versions(cli)
    assert cli("apply", "--no-backup").returncode == 0
    done = cli("backup", "--format", fmt, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["backup"]
    path = Path(report["path"])
    if not path.is_absolute():
        path = cli.workdir / path
    assert path.name.endswith(suffix)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["ledger_version"] == 3
    assert manifest["size_bytes"] == path.stat().st_size > 0
    assert manifest["server_version"].startswith(f"{pg.major}.")
    assert manifest["wal_lsn"] and manifest["restore_point"].startswith("migrate-safe-")
    assert manifest["database"] == f"postgres@127.0.0.1:{pg.port}/{db.name}"
    assert (path.parent / "latest-backup.txt").read_text().strip() == path.name
    if fmt == "plain-gzip":
        assert b"-- PostgreSQL database dump" in gzip.decompress(path.read_bytes())[:200]
    assert pg.password not in path.with_name(path.name + ".json").read_text()


def test_retention_keeps_the_newest_backups(cli: Cli, db: Database) -> None:
    three_versions(cli)
    directory = cli.workdir / "backups" / "migrations"
    taken = []
    for _ in range(4):
        done = cli("backup", "--retention", "2", "--json")
        assert done.returncode == 0, done.stderr
        taken.append(Path(json.loads(done.stdout)["backup"]["path"]).name)
    assert sorted(p.name for p in directory.glob("backup-*.dump")) == sorted(taken[2:])
    assert (directory / "latest-backup.txt").read_text().strip() == taken[-1]


class OneSecond(datetime):
    """A clock stopped at one instant: every backup is taken in the same second."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> OneSecond:
        return cls(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_two_backups_in_one_second_keep_the_one_just_taken(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Names carry the second and a random run id, so the newer backup's name may sort first;
    # retention orders by the manifests' sequence instead.
    monkeypatch.setattr(backup, "datetime", OneSecond)
    db.execute("CREATE TABLE t (id int)")
    with db.connect() as conn:
        for run_id in ("bbbbbbbbbbbb", "aaaaaaaaaaaa"):
            job = BackupJob(conn, db.url, tmp_path, "custom", 1, 60.0, Redactor(), run_id)
            manifest = job.run(ledger_version=None, fingerprint=None)
            assert (tmp_path / "latest-backup.txt").read_text().strip() == manifest.file
            assert (tmp_path / manifest.file).is_file()
    assert [p.name for p in tmp_path.glob("backup-*.dump")] == [manifest.file]
    assert manifest.file == "backup-20260101T120000Z-aaaaaaaaaaaa.dump"
    assert manifest.sequence == 2


def test_apply_takes_a_backup_first_and_a_failed_dump_applies_nothing(
    cli: Cli, db: Database
) -> None:
    three_versions(cli)
    applied = cli("apply", "--to", "2", "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["backup"]["ledger_version"] is None
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        # Held until the apply has given up, however slow the machine is.
        with db.connect() as conn, conn.transaction():
            conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            ready.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    assert ready.wait(30)
    try:
        refused = cli("apply", "--backup-lock-wait", "1s", "--skip-preflight")
    finally:
        release.set()
        holder.join()
    assert refused.returncode == 1
    assert "backup: a table stayed locked by another session for 1s" in refused.stderr
    assert "(--backup-lock-wait); nothing was applied" in refused.stderr
    assert db.scalar("SELECT max(version) FROM migrate_safe.applied") == 2


def test_restore_returns_the_exact_schema_after_a_bad_migration(cli: Cli, db: Database) -> None:
    three_versions(cli)
    assert cli("apply").returncode == 0
    good = schema_hash(db)
    oops = (
        "-- migrate-safe:allow=MS401,MS402\n"  # destructive on purpose: lint would refuse it
        "DROP TABLE orders; ALTER TABLE customers DROP COLUMN email;"
        " CREATE TABLE junk (x int); DELETE FROM customers;"
    )
    cli.write(4, "oops", oops, "SELECT 1;")
    assert cli("apply").returncode == 0  # takes its own backup first, at version 3
    assert schema_hash(db) != good
    refused = cli("restore")
    assert refused.returncode == 5 and "--yes" in refused.stderr
    done = cli("restore", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["matches_backup_fingerprint"] is True
    assert schema_hash(db) == good
    assert db.scalar("SELECT email FROM customers") == "a@example.com"
    assert db.scalar("SELECT max(version) FROM migrate_safe.applied") == 3


def test_restore_refuses_a_backup_whose_checksum_changed(cli: Cli, db: Database) -> None:
    three_versions(cli)
    assert cli("apply").returncode == 0
    directory = cli.workdir / "backups" / "migrations"
    latest = directory / (directory / "latest-backup.txt").read_text().strip()
    latest.write_bytes(latest.read_bytes() + b"tampered")
    done = cli("restore", "--yes")
    assert done.returncode == 4  # restore is the recovery path: its failure is exit 4
    assert "differs from its manifest" in done.stderr


def latest_backup(cli: Cli) -> Path:
    directory = cli.workdir / "backups" / "migrations"
    return directory / (directory / "latest-backup.txt").read_text().strip()


def with_manifest(cli: Cli, path: Path, content: bytes) -> Path:
    """A backup file with `content` and a manifest that vouches for it (sha256 matches)."""
    manifest = json.loads(
        latest_backup(cli).with_name(latest_backup(cli).name + ".json").read_text()
    )
    path.write_bytes(content)
    manifest.update(file=path.name, sha256=hashlib.sha256(content).hexdigest())
    path.with_name(path.name + ".json").write_text(json.dumps(manifest))
    return path


def test_restore_refuses_a_backup_without_its_manifest_unless_told(cli: Cli, db: Database) -> None:
    three_versions(cli)
    assert cli("apply").returncode == 0  # its backup is of the empty database
    backup = latest_backup(cli)
    backup.with_name(backup.name + ".json").unlink()
    refused = cli("restore", "--yes")
    assert refused.returncode == 4, refused.stderr
    assert f"{backup.name}: no manifest ({backup.name}.json)" in refused.stderr
    assert "--allow-missing-manifest" in refused.stderr
    assert db.scalar("SELECT count(*) FROM customers") == 1  # nothing restored
    done = cli("restore", "--yes", "--allow-missing-manifest", "--json")
    assert done.returncode == 0, done.stderr
    assert "has no manifest; restoring it without a sha256 check" in done.stderr
    assert json.loads(done.stdout)["manifest_checked"] is False
    assert db.scalar("SELECT to_regclass('customers')") is None  # the empty database is back


@pytest.mark.parametrize(
    "damage",
    [
        "no backup taken",
        "no such --backup file",
        "pointer names a missing file",
        "manifest is not JSON",
        "pg_restore cannot read it",
        "its SQL fails halfway",
    ],
)
def test_every_restore_failure_exits_4_and_leaves_the_database_as_it_was(
    cli: Cli, db: Database, damage: str
) -> None:
    three_versions(cli)
    assert cli("apply").returncode == 0
    backup = latest_backup(cli)
    args = ["restore", "--yes"]
    if damage == "no backup taken":
        args += ["--backup-dir", str(cli.workdir / "elsewhere")]
        expected = "latest-backup.txt not found (no backup taken yet"
    elif damage == "no such --backup file":
        args += ["--backup", str(cli.workdir / "nothing.dump")]
        expected = "nothing.dump: no such file"
    elif damage == "pointer names a missing file":
        (backup.parent / "latest-backup.txt").write_text("backup-gone.dump\n")
        expected = "names 'backup-gone.dump', which is not a backup file"
    elif damage == "manifest is not JSON":
        backup.with_name(backup.name + ".json").write_text("{not json")
        expected = "not a readable migrate-safe manifest"
    elif damage == "pg_restore cannot read it":
        args += ["--backup", str(with_manifest(cli, backup.with_name("x.dump"), b"garbage"))]
        expected = "restore of x.dump failed; the database is unchanged: pg_restore failed"
    else:  # the clearing step ran first: one transaction must undo it
        script = gzip.compress(b"CREATE TABLE restored (id int);\nSELECT 1/0;\n")
        args += ["--backup", str(with_manifest(cli, backup.with_name("x.sql.gz"), script))]
        expected = "restore of x.sql.gz failed; the database is unchanged: psql failed"
    done = cli(*args)
    assert done.returncode == 4, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert db.scalar("SELECT count(*) FROM customers") == 1
    assert db.scalar("SELECT max(version) FROM migrate_safe.applied") == 3
    assert db.scalar("SELECT to_regclass('restored')") is None


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A fresh tmpfs with the given mount options, unmounted afterwards."""
    mounts: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mount{len(mounts)}"
        target.mkdir()
        # The test suite runs as root (the devcluster needs it too): a full or read-only volume
        # is only real on a real mount.
        assert os.geteuid() == 0, "mounting a tmpfs needs root: run the tests as root"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}"
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", str(target)], check=False)


def test_a_backup_directory_on_a_read_only_mount_stops_apply_before_any_ddl(
    cli: Cli, db: Database, mounted: Callable[[str], Path]
) -> None:
    three_versions(cli)
    read_only = mounted("ro,size=1m")
    for directory in (read_only, read_only / "backups"):  # existing, and to be created
        for command in ("apply", "backup"):
            done = cli(command, "--backup-dir", str(directory))
            assert done.returncode == 5, done.stderr
            assert (
                f"--backup-dir / [backup] dir {directory}: cannot write there "
                "(Read-only file system)"
            ) in done.stderr
            assert "Traceback" not in done.stderr
    assert db.scalar("SELECT to_regclass('customers')") is None


@pytest.mark.parametrize("fmt", ["custom", "plain-gzip"])
def test_a_full_backup_volume_fails_the_backup_naming_the_directory(
    cli: Cli, db: Database, mounted: Callable[[str], Path], fmt: str
) -> None:
    # About 1 MB of hex that compresses to far more than the 64 KiB volume.
    db.execute(
        "CREATE TABLE filler AS SELECT md5(random()::text) || md5(random()::text) AS junk"
        " FROM generate_series(1, 20000)"
    )
    cli.write(1, "t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    full = mounted("size=64k")
    done = cli("apply", "--backup-dir", str(full), "--format", fmt)
    assert done.returncode == 1, done.stderr
    assert f"backup directory {full}: the volume is full" in done.stderr
    assert "Traceback" not in done.stderr
    assert db.scalar("SELECT to_regclass('t')") is None
    assert list(full.iterdir()) == []  # the half-written dump is gone, no pointer written
