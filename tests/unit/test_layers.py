"""The layers hold: the import-linter contracts of pyproject.toml ([tool.importlinter]) say the
harness never imports the operator's dependencies nor its layer (but for `migrate-safe
operator`), the operator never imports psycopg, lint stays pure and reads only the bottom of
the harness, and the product never imports the devcluster. .ci/run runs them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "migrate_safe"


def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_operator_package_is_not_importable_as_operator() -> None:
    # A package named `operator` would shadow the standard library module.
    assert not (PACKAGE.parent / "__init__.py").exists()
