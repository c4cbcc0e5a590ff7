"""The harness core never imports the operator's dependencies: it must run on a laptop or in
CI without kopf, kubernetes or prometheus_client, and the operator layer stays replaceable."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "migrate_safe"
OPERATOR_ONLY = ("kopf", "kubernetes", "prometheus_client")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_harness_core_never_imports_kopf_kubernetes_or_prometheus() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if "k8s" in path.relative_to(PACKAGE).parts:
            continue
        bad = {m for m in imported_modules(path) if m.split(".")[0] in OPERATOR_ONLY}
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}


def test_the_cli_reaches_the_operator_layer_only_through_its_entry_point() -> None:
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "k8s" not in path.relative_to(PACKAGE).parts
        and any(m.startswith("migrate_safe.k8s") for m in imported_modules(path))
    )
    assert users == ["cli.py"]


def test_operator_package_is_not_importable_as_operator() -> None:
    # A package named `operator` would shadow the standard library module.
    assert not (PACKAGE.parent / "__init__.py").exists()
