from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_safe.config import (
    ApplyPolicy,
    Redactor,
    Settings,
    describe_dsn,
)
from migrate_safe.durations import parse_duration, parse_positive_duration
from migrate_safe.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h30m", 5400.0), ("15min", 900.0), ("3", 3.0)],
)
def test_durations_parse_like_postgres_and_kubernetes_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text, what="--x") == seconds


@pytest.mark.parametrize("text", ["", "5 s", "fast", "5sec", "-1s", "1.5.2s"])
def test_bad_duration_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="--lock-timeout"):
        parse_duration(text, what="--lock-timeout")


@given(st.text(max_size=20))
def test_duration_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ConfigError):
        assert parse_duration(text, what="x") >= 0


@pytest.mark.parametrize("text", ["0", "0s", "0ms", "0.0001"])
def test_a_timeout_that_postgres_would_read_as_wait_forever_is_refused(text: str) -> None:
    # PostgreSQL receives whole milliseconds: anything below 1ms arrives as 0 = no timeout.
    with pytest.raises(ConfigError, match=r"--lock-timeout: .* is less than 1ms; wait forever"):
        parse_positive_duration(text, what="--lock-timeout", zero_means="wait forever")
    assert parse_positive_duration("1ms", what="--lock-timeout", zero_means="x") == 0.001


@pytest.mark.parametrize("schema", ["public", "information_schema", "pg_catalog", "pg_temp"])
def test_a_ledger_schema_shared_with_everything_else_is_refused(schema: str) -> None:
    with pytest.raises(ConfigError, match=f"--ledger-schema .*'{schema}' is not a schema"):
        Settings(None, Path("m"), ledger_schema=schema)
    assert Settings(None, Path("m"), ledger_schema="app_ledger").ledger_schema == "app_ledger"


def test_lock_timeout_escalates_by_doubling_up_to_the_cap() -> None:
    policy = ApplyPolicy(lock_timeout=0.5, lock_timeout_max=3.0)
    assert [policy.lock_timeout_for(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    # A per-file lock-timeout directive starts higher; the cap never lowers it.
    assert policy.lock_timeout_for(1, initial=5.0) == 5.0


def test_backoff_grows_and_is_bounded() -> None:
    policy = ApplyPolicy(retry_backoff=0.25, retry_backoff_max=1.0)
    assert [policy.backoff_for(n) for n in range(1, 5)] == [0.25, 0.5, 1.0, 1.0]


def test_redactor_hides_passwords_in_urls_keyword_dsns_and_known_secrets() -> None:
    redact = Redactor()
    redact.add_secret("s3cr3t-value")
    text = (
        "postgresql://app:hunter2@db:5432/x and host=db password=hunter3 user=app "
        "and the raw s3cr3t-value"
    )
    clean = redact(text)
    for secret in ("hunter2", "hunter3", "s3cr3t-value"):
        assert secret not in clean
    assert "postgresql://app:***@db:5432/x" in clean


def test_describe_dsn_names_the_target_without_the_password() -> None:
    described = describe_dsn("postgresql://app:hunter2@db.internal:6432/orders")
    assert described == "app@db.internal:6432/orders"
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        describe_dsn("postgresql://app:pw@host:notaport/db?sslmode=bogus bogus")
