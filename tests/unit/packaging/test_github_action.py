"""The composite GitHub Action (action.yml) and the example workflow that uses it: the keys
GitHub requires, every input referenced exists, the commands exist in the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import yaml

from tests.unit.packaging.conftest import ROOT

ACTION: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
# YAML 1.1 reads a bare `on:` key as True.
WORKFLOW: dict[Any, Any] = yaml.safe_load(
    (ROOT / "examples" / "ci" / "github-actions.yml").read_text()
)


def test_action_is_a_composite_action() -> None:
    assert ACTION["name"] and ACTION["description"]
    assert ACTION["runs"]["using"] == "composite"
    steps = ACTION["runs"]["steps"]
    assert steps
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", f"composite run steps need a shell: {step}"


def test_inputs_referenced_exist_and_required_ones_have_no_default() -> None:
    text = (ROOT / "action.yml").read_text()
    referenced = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert referenced <= set(ACTION["inputs"]), referenced - set(ACTION["inputs"])
    assert set(ACTION["inputs"]) <= referenced, "an input nobody uses"
    for name, spec in ACTION["inputs"].items():
        assert spec.get("description"), name
        if spec.get("required"):
            assert "default" not in spec, name
    for expected in ("migrations-dir", "postgres-version", "fail-on-warnings", "python-version",
                     "database-url"):  # fmt: skip
        assert expected in ACTION["inputs"]


def test_step_outputs_referenced_exist() -> None:
    ids = {step.get("id") for step in ACTION["runs"]["steps"]}
    text = (ROOT / "action.yml").read_text()
    for step_id in re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs", text):
        assert step_id in ids, step_id


def test_inputs_reach_scripts_through_env_not_interpolation() -> None:
    """`${{ inputs.x }}` inside a script is a shell-injection hole; env variables are not."""
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


def test_action_runs_lint_and_verify_and_writes_the_summary() -> None:
    scripts = "\n".join(step.get("run", "") for step in ACTION["runs"]["steps"])
    assert "migrate-safe lint" in scripts and "--format github" in scripts
    assert "migrate-safe verify" in scripts and "--markdown" in scripts
    assert "$GITHUB_STEP_SUMMARY" in scripts


def test_the_cli_accepts_the_flags_the_action_passes() -> None:
    for command, flags in (
        ("lint", ["--format", "--pg-version", "--strict", "--migrations-dir", "--log-dir"]),
        ("verify", ["--markdown", "--log-dir", "--database-url"]),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "migrate_safe", command, "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        for flag in flags:
            assert flag in out.stdout, (command, flag)


def test_example_workflow_uses_the_action_with_a_pinned_postgres() -> None:
    assert WORKFLOW.get("on", WORKFLOW.get(True)), "workflow needs on:"
    (job,) = WORKFLOW["jobs"].values()
    image = job["services"]["postgres"]["image"]
    assert re.fullmatch(r"postgres:\d+\.\d+", image), f"pin the server version: {image}"
    steps = job["steps"]
    (usage,) = [s for s in steps if "migrate-safe" in s.get("uses", "")]
    assert set(usage["with"]) <= set(ACTION["inputs"])
    for name, spec in ACTION["inputs"].items():
        if spec.get("required"):
            assert name in usage["with"], name
    pg_major = image.split(":")[1].split(".")[0]
    assert usage["with"]["postgres-version"] == pg_major, "lint for the server you run"
