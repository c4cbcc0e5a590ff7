"""The settings file: every key type-checked, named with its file and table when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate_safe.cli import build_parser, phase_flags
from migrate_safe.errors import ConfigError
from migrate_safe.options import PhaseFlags, phase_options


def options_from(tmp_path: Path, toml: str, *flags: str) -> PhaseFlags:
    """The flags of `apply --config FILE FLAGS…`, as the command line builds them."""
    path = tmp_path / "settings.toml"
    path.write_text(toml)
    return phase_flags(build_parser().parse_args(["apply", "--config", str(path), *flags]))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[preflight]\nlong_transaction_seconds = "abc"',
            '[preflight] long_transaction_seconds = "abc": expected a number',
        ),
        (
            '[preflight]\nfail_on = "SchemaDrift"',
            '[preflight] fail_on = "SchemaDrift": expected a list of strings',
        ),
        (
            '[preflight]\nwarn_on = ["BlockingLocks", 3]',
            '[preflight] warn_on = ["BlockingLocks", 3]: expected a list of strings',
        ),
        ("[preflight]\nblocked_seconds = 0", "[preflight] blocked_seconds = 0: must be above zero"),
        (
            "[preflight]\nidle_in_transaction_seconds = -5",
            "[preflight] idle_in_transaction_seconds = -5: must be above zero",
        ),
        (
            "[preflight]\nreplication_lag_seconds = inf",
            "[preflight] replication_lag_seconds = inf: must be a finite number",
        ),
        (
            "[preflight]\nlong_transaction_seconds = true",
            "[preflight] long_transaction_seconds = true: expected a number",
        ),
        ("[backup]\nretention = 0", "[backup] retention = 0: must be above zero"),
        ("[backup]\nretention = 2.5", "[backup] retention = 2.5: expected a whole number"),
        ('[backup]\nretention = "5"', '[backup] retention = "5": expected a whole number'),
        ('[backup]\nformat = "zip"', '[backup] format = "zip": use one of "custom", "plain-gzip"'),
        ('[backup]\ndir = ""', '[backup] dir = "": must not be empty'),
        ("[backup]\ndir = 7", "[backup] dir = 7: expected a string"),
        (
            '[backup]\nlock_wait_seconds = "1m"',
            '[backup] lock_wait_seconds = "1m": expected a number',
        ),
        ('preflight = "strict"', "[preflight] must be a table"),
        ("[prefligth]\nblocked_seconds = 1", "unknown table(s) or top-level key(s) prefligth"),
        ("retention = 3", "unknown table(s) or top-level key(s) retention"),
    ],
)
def test_a_wrongly_typed_or_meaningless_value_names_file_table_key_and_value(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        phase_options(options_from(tmp_path, toml))
    assert refused.value.message.startswith(f"{tmp_path / 'settings.toml'}: ")
    assert message in refused.value.message


def test_well_typed_values_are_used_and_integers_count_as_seconds(tmp_path: Path) -> None:
    options = phase_options(
        options_from(
            tmp_path,
            "[preflight]\nlong_transaction_seconds = 5\nblocked_seconds = 0.5\n"
            'fail_on = ["SchemaDrift"]\n'
            '[backup]\ndir = "b"\nformat = "plain-gzip"\nretention = 2\nlock_wait_seconds = 3\n',
        )
    )
    assert options.preflight.long_transaction_seconds == 5.0
    assert options.preflight.blocked_seconds == 0.5
    assert options.preflight.severity == {"SchemaDrift": "fail"}
    assert (options.backup_dir, options.backup_format) == (Path("b"), "plain-gzip")
    assert (options.retention, options.backup_lock_wait) == (2, 3.0)


def test_flags_win_over_the_file_and_absent_keys_keep_the_defaults(tmp_path: Path) -> None:
    flags = options_from(
        tmp_path,
        "[preflight]\nlong_transaction_seconds = 5\n",
        "--long-transaction-seconds",
        "7",
        "--retention",
        "9",
    )
    options = phase_options(flags)
    assert options.preflight.long_transaction_seconds == 7.0
    assert options.preflight.idle_in_transaction_seconds == 10.0
    assert options.retention == 9
    assert options.backup_dir == Path("backups/migrations")
