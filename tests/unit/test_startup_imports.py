"""Start-up cost: what the commands that never lint (apply --skip-preflight, status, --help,
--version) import does not load the lint rules, their runner or the parse-tree helpers, which
are about a third of applying many small migrations' CPU. Each check runs in a fresh
interpreter, as a user's `migrate-safe` does; the lint package still offers every name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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


def loaded_after(code: str, env: Mapping[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (in `env`, if given)."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
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


# Nothing answers there: start-up reads the configuration and makes the client but sends no
# request (kopf's watches, which do, start only once its startup handlers have returned).
FAKE_SERVER = "https://api-server.invalid:6443"

# What `migrate-safe operator` runs before kopf watches anything: its modules, then its
# startup handlers in kopf's order (handlers before fleet_handlers) with what kopf passes them
# (the settings, the memo and the indexes, empty before the first watch event), then its
# cleanup handler. configure loads the kubeconfig and makes the client.
OPERATOR_START_UP = f"""
import asyncio
import kopf
import migrate_safe.k8s.main, migrate_safe.k8s.fleet_handlers
from migrate_safe.k8s import fleet_handlers, handlers, kube

INDEXES = ("resource_index", "job_index", "pod_index", "set_index", "member_index", "secret_index")

async def start_up_and_clean_up():
    memo = kopf.Memo()
    indexes = dict.fromkeys(INDEXES, {{}})
    await handlers.configure(settings=kopf.OperatorSettings(), memo=memo, **indexes)
    await fleet_handlers.start_fleets(memo=memo, **indexes)
    assert len(memo["controllers"]) == 2, memo
    await handlers.stop(memo=memo)

asyncio.run(start_up_and_clean_up())
assert kube.api_client().configuration.host == {FAKE_SERVER!r}
"""


def test_the_operator_loads_none_of_the_kubernetes_clients_generated_api_classes(
    tmp_path: Path,
) -> None:
    """Each wraps every method in pydantic's validate_call: the three the operator's calls
    would need cost 24 MiB of its memory and 0.6 s of CPU to import. Its start-up, client
    included, and its handlers go through k8s/kube.py's plain requests instead."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(fake_kubeconfig(FAKE_SERVER)))  # JSON is YAML
    # Outside a cluster (no service host), so start-up falls back to the kubeconfig file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    loaded = loaded_after(OPERATOR_START_UP, env | {"KUBECONFIG": str(kubeconfig)})
    assert "migrate_safe.k8s.actions" in loaded
    assert sorted(m for m in loaded if m.startswith("kubernetes.client.api.")) == []


def fake_kubeconfig(server: str) -> dict[str, object]:
    """One context: a server and a bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "not-a-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
