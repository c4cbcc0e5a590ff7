"""Turn the DatabaseMigration CRD's OpenAPI schema into a strict JSON schema.

kubeconform validates custom resources against JSON schemas found through `-schema-location`;
this writes `<kind>_<version>.json` (kubeconform's `{{ .ResourceKind }}_{{ .ResourceAPIVersion }}`
naming) for every served version of the CRD. The tests use the same conversion with `jsonschema`
to check the example manifests.

    python tools/crd_schema.py OUTDIR [CRD.yaml ...]     default: every crds/*.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "databasemigration.yaml"


def _strict(node: Any) -> Any:
    """Copy an OpenAPI v3 structural schema, closing objects the way the API server prunes them.

    An object with `properties` and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields` loses unknown fields on the server; here they are
    errors, so a typo in a manifest fails validation instead of silently disappearing.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def json_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """File name → JSON schema, one per served version of the CRD."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    schemas: dict[str, dict[str, Any]] = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = _strict(version["schema"]["openAPIV3Schema"])
        api_version = f"{group}/{version['name']}"
        schema["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
        schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schemas[f"{kind.lower()}_{version['name']}.json"] = schema
    return schemas


def load(path: Path = CRD) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    crds = [Path(a) for a in argv[1:]] or sorted((ROOT / "crds").glob("*.yaml"))
    for crd in crds:
        for name, schema in json_schemas(load(crd)).items():
            (outdir / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            print(outdir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
