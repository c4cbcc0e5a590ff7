"""The metrics reference lists exactly what the operator exports; the docs' links resolve."""

from __future__ import annotations

import re

from migrate_safe.k8s import metrics
from tests.unit.packaging.conftest import METRIC, ROOT, exported_metrics

DOCS = ROOT / "docs"


def test_metrics_reference_documents_every_exported_metric() -> None:
    text = (DOCS / "metrics.md").read_text()
    table = set(re.findall(r"^\| `(migrate_safe_\w+)` \|", text, re.MULTILINE))
    registered = {m.name for m in metrics.ALL}
    assert table == registered


def test_docs_mention_only_exported_metrics() -> None:
    exported = exported_metrics()
    for name in ("metrics.md", "runbook.md", "helm.md"):
        mentioned = set(METRIC.findall((DOCS / name).read_text()))
        assert mentioned <= exported, (name, mentioned - exported)


def test_relative_links_in_the_packaging_docs_resolve() -> None:
    for name in ("runbook.md", "argocd.md", "flux.md", "helm.md", "metrics.md"):
        doc = DOCS / name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (doc.parent / target).exists(), f"{name}: broken link {target}"
