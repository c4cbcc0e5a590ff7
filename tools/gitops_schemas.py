"""Lay out kubeconform schemas for Flux and Argo CD objects from the projects' own CRDs.

The CRD manifests come from the controllers' Go modules at pinned versions, fetched through the Go
module proxy (`go mod download`, which checks them against the checksum database) and compared
with the hashes below, then converted by tools/crd_schema.py. The result is cached outside the
checkout in ${MIGRATE_SAFE_TOOLS_CACHE:-~/.cache/migrate-safe/tools}/<key>/, where <key> names the
pinned versions and a hash of this script and of the converter; a cache hit runs no go command.

    python -m tools.gitops_schemas        (from the repository root)

prints the directory to pass as kubeconform's
`-schema-location 'DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.crd_schema import json_schemas, load

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CrdModule:
    """A Go module that carries CRD manifests, pinned by version and by its go.sum hash."""

    path: str
    version: str
    # The module zip's hash as go.sum records it: a release re-published under the same version
    # fails here instead of silently changing the schemas.
    zip_hash: str
    crd_glob: str


# The newest releases whose modules the Go toolchain here (1.26) accepts and the Go module proxy
# serves: source- and kustomize-controller v1.10 and Argo CD v3.6 declare go 1.27, and of
# helm-controller the proxy serves v1.6.4 (the API version Flux v2.9.5 requires) but not v1.6.5.
MODULES = (
    CrdModule(
        "github.com/fluxcd/source-controller",
        "v1.9.6",
        "h1:nG534/bI6nVpyHra7ONAk6xDB3xPsVT+EOLHZHXPrrc=",
        "config/crd/bases/*.yaml",
    ),
    CrdModule(
        "github.com/fluxcd/kustomize-controller",
        "v1.9.6",
        "h1:XB+G3A0mky0j5uVHZWv4oSlS2RvZBoNIUhstIvY0JKE=",
        "config/crd/bases/*.yaml",
    ),
    CrdModule(
        "github.com/fluxcd/helm-controller",
        "v1.6.4",
        "h1:u/Ew7LehrwDQaE/NqWdaB3XnNDCxRGDcp1FZl7RKj4g=",
        "config/crd/bases/*.yaml",
    ),
    CrdModule(
        "github.com/argoproj/argo-cd/v3",
        "v3.5.7",
        "h1:Xm1BF+I5OgDKUG3SDK49vn2/Y5AMyaNVko+/JT08gj0=",
        "manifests/crds/*-crd.yaml",
    ),
)


def log(message: str) -> None:
    print(f"[tools/gitops_schemas] {message}", file=sys.stderr)


def cache_key() -> str:
    versions = "_".join(f"{m.path.split('/')[2]}-{m.version}" for m in MODULES)
    code = b"".join(p.read_bytes() for p in (Path(__file__), HERE / "crd_schema.py"))
    return f"gitops-schemas_{versions}_{hashlib.sha256(code).hexdigest()[:12]}"


def go_command() -> str:
    # As tools/gotool.sh: $GO, else go on PATH, else where the bootstrap installs it.
    return os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"


def download(module: CrdModule) -> Path:
    """The module's extracted directory in the Go module cache, after checking its hash."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        done = subprocess.run(
            [go_command(), "mod", "download", "-json", f"{module.path}@{module.version}"],
            cwd=outside_any_module,
            capture_output=True,
            text=True,
            check=False,
        )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Error" in info:
        raise SystemExit(
            f"go mod download {module.path}@{module.version} failed: "
            f"{info.get('Error') or done.stderr.strip()}"
        )
    if info["Sum"] != module.zip_hash:
        raise SystemExit(
            f"{module.path}@{module.version} has hash {info['Sum']}, "
            f"tools/gitops_schemas.py pins {module.zip_hash}"
        )
    return Path(info["Dir"])


def write_schemas(outdir: Path) -> None:
    """<group>/<kind>_<version>.json for every served version of every pinned CRD."""
    for module in MODULES:
        crds = sorted(download(module).glob(module.crd_glob))
        if not crds:
            raise SystemExit(f"{module.path}@{module.version} has no {module.crd_glob}")
        for crd_path in crds:
            crd = load(crd_path)
            group_dir = outdir / crd["spec"]["group"]
            group_dir.mkdir(parents=True, exist_ok=True)
            for name, schema in json_schemas(crd).items():
                text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
                (group_dir / name).write_text(text)
        log(f"converted {len(crds)} CRDs of {module.path}@{module.version}")


def cached_schemas() -> Path:
    default_root = Path.home() / ".cache" / "migrate-safe" / "tools"
    root = Path(os.environ.get("MIGRATE_SAFE_TOOLS_CACHE", default_root))
    dest = root / cache_key()
    if dest.is_dir():
        return dest
    log(f"cache miss: writing {dest.name}")
    root.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: an interrupted run never leaves a half-filled cache entry.
    tmp = Path(tempfile.mkdtemp(prefix=".build.", dir=root))
    try:
        write_schemas(tmp)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # not merely beaten to it by a concurrent run
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(cached_schemas())
