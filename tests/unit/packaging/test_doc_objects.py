"""tools/doc_objects.py: which YAML blocks of a doc reach kubeconform, where a failure points."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.doc_objects import main

FLUX = "kustomize.toolkit.fluxcd.io,source.toolkit.fluxcd.io"

DOC = """# Example

```yaml
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: orders}
```

A fragment of the same kind of object:

```yaml
  healthChecks:
    - apiVersion: kustomize.toolkit.fluxcd.io/v1
      kind: Kustomization
```

An object of another group:

```yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
```

```yml
apiVersion: apps/v1
kind: Deployment
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
```
"""


def test_copies_blocks_with_whole_objects_of_the_groups(tmp_path: Path) -> None:
    doc = tmp_path / "flux.md"
    doc.write_text(DOC)
    out = tmp_path / "out"

    assert main([str(out), FLUX, str(doc)]) == 0

    written = {p.name.rpartition("-")[2]: p.read_text() for p in out.iterdir()}
    assert sorted(written) == ["line26.yaml", "line4.yaml"]
    assert written["line4.yaml"].startswith("apiVersion: kustomize.toolkit.fluxcd.io/v1\n")
    # A block is copied whole, objects of other groups in it included.
    assert "kind: Deployment" in written["line26.yaml"]


def test_a_block_that_does_not_parse_names_the_doc_and_line(tmp_path: Path) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("Text\n\n```yaml\nkind: [Kustomization\n```\n")

    with pytest.raises(SystemExit, match=r"broken\.md:4: the YAML block does not parse"):
        main([str(tmp_path / "out"), FLUX, str(doc)])
