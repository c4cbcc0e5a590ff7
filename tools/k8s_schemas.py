"""Lay out Kubernetes JSON schemas from the kubernetes-validate package for kubeconform, offline.

kubernetes-validate ships one schema per kind and version (`deployment-apps-v1.json`) whose
`$ref`s point at `/api/_definitions.json`, a path its own resolver maps. kubeconform resolves
references as files, so this copies one Kubernetes version's strict schemas with those
references made absolute:

    python tools/k8s_schemas.py OUTDIR [VERSION]      # VERSION like 1.35.0 (default)

and prints the directory to pass as kubeconform's
`-schema-location 'DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate

REF = '"/api/_definitions.json#'


def layout(outdir: Path, version: str = "1.35.0") -> Path:
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = source / f"v{version}-local-strict"
    if not source.is_dir():
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version}")
    outdir.mkdir(parents=True, exist_ok=True)
    definitions = outdir / "_definitions.json"
    for path in source.glob("*.json"):
        text = path.read_text()
        target = '"#' if path.name == definitions.name else f'"{definitions.as_uri()}#'
        (outdir / path.name).write_text(text.replace(REF, target))
    return outdir


if __name__ == "__main__":
    if not 1 <= len(sys.argv) - 1 <= 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(layout(Path(sys.argv[1]), *sys.argv[2:]))
