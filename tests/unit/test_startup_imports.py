"""Start-up cost: what the commands that never lint (apply --skip-preflight, status, --help,
--version) import does not load the lint rules, their runner or the parse-tree helpers, which
are about a third of applying many small migrations' CPU. Each check runs in a fresh
interpreter, as a user's `migrate-safe` does; the lint package still offers every name."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Loaded by a lint run only: the rules (and what fills their registry), the runner, the
# parse-tree helpers and the output/suppression modules that read the filled registry.
LINTER_MODULES = (
    "migrate_safe.lint.rules",
    "migrate_safe.lint.runner",
    "migrate_safe.lint.context",
    "migrate_safe.lint.sqlast",
    "migrate_safe.lint.judge",
    "migrate_safe.lint.output",
    "migrate_safe.lint.suppress",
)


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import migrate_safe.cli",
        # what `apply` builds before it connects: its parser and its command
        "from migrate_safe.cli import build_parser, command_of\n"
        "command_of(build_parser().parse_args(['apply', '--skip-preflight', '--no-backup']))",
        "from migrate_safe.cli import build_parser, command_of\n"
        "command_of(build_parser().parse_args(['status']))",
    ],
    ids=["import", "apply", "status"],
)
def test_commands_that_do_not_lint_start_without_the_linter(code: str) -> None:
    loaded = loaded_after(code)
    linter = sorted(m for m in loaded if m.startswith(LINTER_MODULES))
    assert linter == []
    assert "migrate_safe.lint.facts" in loaded  # the catalog's types still come from lint


def test_the_lint_command_loads_the_rules() -> None:
    loaded = loaded_after(
        "from migrate_safe.cli import build_parser, command_of\n"
        "command_of(build_parser().parse_args(['lint']))"
    )
    assert "migrate_safe.lint.rules" in loaded
    assert "migrate_safe.lint.runner" in loaded


def test_the_lint_package_offers_every_name_it_lists() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import migrate_safe.lint as lint\n"
            "missing = [n for n in lint.__all__ if getattr(lint, n, None) is None]\n"
            "print(missing, len(lint.RULES) > 0)\n"
            "lint.no_such_name",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip() == "[] True"
    assert "AttributeError: module 'migrate_safe.lint' has no attribute 'no_such_name'" in (
        done.stderr
    )


def test_the_operator_loads_none_of_the_kubernetes_clients_generated_api_classes() -> None:
    """Each wraps every method in pydantic's validate_call: the three the operator's calls
    would need cost 24 MiB of its memory and 0.6 s of CPU to import. Its handlers and its
    client, made as at start-up, go through k8s/kube.py's plain requests instead."""
    loaded = loaded_after(
        "import migrate_safe.k8s.handlers, migrate_safe.k8s.fleet_handlers\n"
        "from migrate_safe.k8s import kube\n"
        "kube.api_client()"
    )
    assert "migrate_safe.k8s.actions" in loaded
    assert sorted(m for m in loaded if m.startswith("kubernetes.client.api.")) == []
