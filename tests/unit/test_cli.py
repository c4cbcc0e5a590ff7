"""The command line as a program: arguments come only from `main`'s caller."""

from __future__ import annotations

import argparse
import sys

import pytest

from migrate_safe.cli import OPERATOR, build_parser, command_of, main


def test_main_with_no_arguments_asks_for_a_command_and_ignores_the_real_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["migrate-safe", "status", "--database-url", "x"])
    assert main([]) == 5
    error = capsys.readouterr().err
    assert error.startswith("migrate-safe: error: the following arguments are required: command")


COMMAND_LINES = [
    ["apply", "--dry-run"],
    ["run"],
    ["rollback", "--steps", "2"],
    ["status"],
    ["plan"],
    ["baseline", "--version", "1"],
    ["force", "--version", "0"],
    ["repair"],
    ["demo"],
    ["preflight", "--to", "3"],
    ["backup"],
    ["restore", "--yes"],
    ["postflight"],
    ["fingerprint", "--diff", "a", "b"],
    ["verify"],
    ["lint", "--strict"],
    ["wait", "--version", "1"],
]


def test_every_command_is_bound_to_its_typed_options() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {line[0] for line in COMMAND_LINES} == set(subcommands.choices) - {OPERATOR}
    for line in COMMAND_LINES:
        assert callable(command_of(parser.parse_args(line)))
