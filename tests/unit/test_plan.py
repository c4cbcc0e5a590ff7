"""The pure ledger-vs-source rules behind status, plan, apply and rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate_safe.errors import ConfigError, MigrationFailed, RollbackFailed
from migrate_safe.ledger import AppliedRow
from migrate_safe.plan import LedgerState
from migrate_safe.scanner import Migration
from migrate_safe.source import Source, script_from_text


def migration(version: int, *, down: bool = True, up: str | None = None) -> Migration:
    up_script = script_from_text(up or f"CREATE TABLE t{version} ();", f"{version}_m.up.sql")
    down_script = script_from_text(f"DROP TABLE t{version};", f"{version}_m.down.sql")
    return Migration(version, "m", up_script, down_script if down else None)


def row(m: Migration, *, state: str = "applied", down_sql: str | None = "stored") -> AppliedRow:
    return AppliedRow(
        m.version, m.name, m.up.checksum, down_sql, None, False, state, 0,
        datetime(2026, 1, 1, tzinfo=UTC), 5, "app", "run",
    )  # fmt: skip


def state(applied: list[AppliedRow], migrations: list[Migration]) -> LedgerState:
    return LedgerState(applied, Source(Path("m"), migrations))


def test_the_ledger_position_status_reports() -> None:
    ms = [migration(1), migration(2), migration(3)]
    s = state([row(ms[0])], ms)
    assert s.current_version == 1
    assert [m.version for m in s.pending] == [2, 3]
    assert s.dirty == []


def test_apply_to_a_target_stops_there_and_rejects_unknown_or_lower_targets() -> None:
    ms = [migration(1), migration(2), migration(3)]
    s = state([row(ms[0])], ms)
    assert [m.version for m in s.to_apply(2)] == [2]
    with pytest.raises(ConfigError, match="--to 7: no migration"):
        s.to_apply(7)
    s2 = state([row(ms[0]), row(ms[1])], ms)
    with pytest.raises(ConfigError, match="rollback --to 1"):
        s2.to_apply(1)


def test_dirty_rows_and_edited_files_refuse_apply() -> None:
    ms = [migration(1), migration(2)]
    with pytest.raises(MigrationFailed, match="dirty at version 2"):
        state([row(ms[0]), row(ms[1], state="dirty")], ms).refuse_unsafe_apply()
    edited = [migration(1, up="CREATE TABLE t1 (x int);"), ms[1]]
    with pytest.raises(MigrationFailed, match=r"1_m\.up\.sql: changed after it was applied"):
        state([row(ms[0])], edited).refuse_unsafe_apply()


def test_out_of_order_pending_versions_are_refused() -> None:
    ms = [migration(1), migration(2), migration(3)]
    with pytest.raises(MigrationFailed, match="out-of-order"):
        state([row(ms[0]), row(ms[2])], ms).to_apply(None)


def test_rollback_prefers_down_sql_stored_in_the_ledger_and_goes_newest_first() -> None:
    ms = [migration(1), migration(2), migration(3)]
    s = state([row(m) for m in ms], ms[:1])  # source reverted: 2 and 3 are gone
    steps = s.to_roll_back(target=1, steps=None)
    assert [step.row.version for step in steps] == [3, 2]
    assert steps[0].down.text == "stored"
    assert s.missing_from_source == [2, 3]
    assert [st.row.version for st in s.to_roll_back(target=None, steps=None)] == [3]


def test_rollback_without_any_down_names_the_versions_and_runs_nothing() -> None:
    ms = [migration(1, down=False), migration(2, down=False)]
    s = state([row(m, down_sql=None) for m in ms], ms)
    with pytest.raises(RollbackFailed, match=r"version\(s\) 2, 1"):
        s.to_roll_back(target=0, steps=None)
