"""Fast checks on the Dockerfile's text, before any build: it stays consistent with pyproject.toml
and follows hadolint's rules that matter for this image (without the binary). The image itself is
built with buildah and run on the devcluster's node by tests/e2e/test_image.py."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.packaging.conftest import ROOT

PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            name = rest.split()[2] if " AS " in rest.upper() else None
            stages.append(Stage(image, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


ARGS, STAGES = parse((ROOT / "Dockerfile").read_text())
FINAL = STAGES[-1]


def _requires_python_minor() -> str:
    match = re.fullmatch(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert match, "requires-python is expected as >=X.Y"
    return match.group(1)


def test_multi_stage_build_from_the_python_pyproject_requires() -> None:
    assert len(STAGES) >= 2
    minor = _requires_python_minor()
    for stage in STAGES:
        repo, _, tag = stage.image.partition(":")
        assert repo == "python", stage.image
        assert re.match(rf"{re.escape(minor)}(\.\d+)?-slim", tag), (
            f"{stage.image}: expected python:{minor}[.patch]-slim… (requires-python >= {minor})"
        )


def test_base_images_are_pinned_tags_not_latest() -> None:
    for stage in STAGES:
        _, _, tag = stage.image.partition(":")
        assert tag and tag != "latest", f"{stage.image}: pin a tag (hadolint DL3006/DL3007)"


def test_entrypoint_is_the_console_script() -> None:
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert entrypoint.args == '["migrate-safe"]', "exec form, so signals reach the operator"
    assert "migrate-safe" in PYPROJECT["project"]["scripts"]


def test_installs_the_operator_extra_that_pyproject_defines() -> None:
    installs = " ".join(i.args for stage in STAGES for i in stage.all("RUN"))
    extras = set(re.findall(r"\.whl\)?\[([\w,-]+)\]", installs))
    requested = {e for group in extras for e in group.split(",")}
    assert requested == {"operator"}, "the image runs the operator: it needs kopf & co."
    defined = set(PYPROJECT["project"].get("optional-dependencies", {}))
    assert requested <= defined, f"pyproject.toml defines no extra {requested - defined}"


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = FINAL.all("USER")
    assert users, "the final stage must set USER (hadolint DL3002)"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1].args
    # The chart's podSecurityContext runs as the same UID.
    assert "runAsUser: 10001" in (ROOT / "charts" / "migrate-safe" / "values.yaml").read_text()
    assert int(user) == 10001


def test_apt_get_hygiene() -> None:
    for stage in STAGES:
        for run in stage.all("RUN"):
            if "apt-get install" not in run.args:
                continue
            assert "apt-get update" in run.args, "update and install in one layer (DL3009)"
            assert "--no-install-recommends" in run.args, "DL3015"
            assert re.search(r"-y\b|--yes\b", run.args), "DL3014"
            assert "rm -rf /var/lib/apt/lists/*" in run.args, "DL3009"
            assert "apt-get upgrade" not in run.args and "dist-upgrade" not in run.args, "DL3005"


def test_postgresql_client_is_new_enough_for_supported_servers() -> None:
    """pg_dump refuses a server of a newer major; 17 covers every server from 12 to 17."""
    run = " ".join(i.args for i in FINAL.all("RUN"))
    assert "postgresql-client-${PG_MAJOR}" in run
    pg_major = next(i.args for i in FINAL.all("ARG") if i.args.startswith("PG_MAJOR="))
    assert int(pg_major.split("=")[1]) >= 17


def test_no_add_of_urls_and_explicit_ownership_in_the_final_stage() -> None:
    for stage in STAGES:
        for add in stage.all("ADD"):
            assert not re.search(r"https?://", add.args), "ADD of a URL (DL3020): use COPY"
    for copy in FINAL.all("COPY"):
        assert "--chown=" in copy.args, f"COPY {copy.args}: say who owns it"


def test_no_build_tools_in_the_final_stage() -> None:
    tools = {"gcc", "g++", "make", "build-essential", "git", "curl", "wget", "libpq-dev"}
    for run in FINAL.all("RUN"):
        words = set(shlex.split(run.args.replace("&&", " ")))
        assert not words & tools, words & tools


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore, ".dockerignore starts from nothing and lists what the build needs"
    for stage in STAGES:
        for copy in stage.all("COPY"):
            if "--from=" in copy.args:
                continue
            *sources, _dest = [w for w in copy.args.split() if not w.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore, f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("path", ["README.md", "pyproject.toml"])
def test_pyproject_metadata_files_are_in_the_context(path: str) -> None:
    # setuptools reads the readme named in pyproject while building the wheel.
    assert path in {"README.md", "pyproject.toml"}
    assert f"!{path}" in (ROOT / ".dockerignore").read_text().split()
