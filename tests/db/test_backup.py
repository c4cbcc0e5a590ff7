"""Backups before DDL, and restore: verified files, manifests, retention, exact schema back."""

from __future__ import annotations

import gzip
import json
import stat
import threading
import time
from pathlib import Path

import pytest

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
    assert manifest["server_version"].startswith("15")
    assert manifest["wal_lsn"] and manifest["restore_point"].startswith("migrate-safe-")
    assert manifest["database"] == f"postgres@127.0.0.1:{pg.port}/{db.name}"
    assert (path.parent / "latest-backup.txt").read_text().strip() == path.name
    if fmt == "plain-gzip":
        assert b"-- PostgreSQL database dump" in gzip.decompress(path.read_bytes())[:200]
    assert pg.password not in path.with_name(path.name + ".json").read_text()


def test_retention_keeps_the_newest_backups(cli: Cli, db: Database) -> None:
    three_versions(cli)
    for _ in range(4):
        assert cli("backup", "--retention", "2").returncode == 0
        time.sleep(1.05)  # backup names carry the second
    backups = sorted((cli.workdir / "backups" / "migrations").glob("backup-*.dump"))
    assert len(backups) == 2


def test_apply_takes_a_backup_first_and_a_failed_dump_applies_nothing(
    cli: Cli, db: Database
) -> None:
    three_versions(cli)
    applied = cli("apply", "--to", "2", "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["backup"]["ledger_version"] is None
    ready = threading.Event()

    def hold() -> None:
        with db.connect() as conn, conn.transaction():
            conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            ready.set()
            time.sleep(3)

    holder = threading.Thread(target=hold)
    holder.start()
    ready.wait(5)
    refused = cli("apply", "--backup-lock-wait", "1s", "--skip-preflight")
    holder.join()
    assert refused.returncode == 1
    assert "backup" in refused.stderr and "nothing was applied" in refused.stderr
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
    assert done.returncode == 5
    assert "differs from its manifest" in done.stderr
