"""Copy the Kubernetes objects that Markdown docs show in YAML blocks to files for kubeconform.

A block is copied, as written, when it holds at least one whole object (`apiVersion` and `kind` at
its top level) of one of the given API groups; fragments (a `metadata:` excerpt, a list under
`healthChecks:`) are left out. Each file is named after its doc and the block's first line, so a
failure points at the place to fix:

    python tools/doc_objects.py OUTDIR GROUP[,GROUP...] DOC.md [DOC.md ...]

prints the files written, one a line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def api_group(obj: object) -> str | None:
    if not isinstance(obj, dict) or "kind" not in obj:
        return None
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0] or None


def blocks_with_objects(doc: Path, groups: set[str]) -> list[tuple[int, str]]:
    """(first line, text) of each YAML block holding a whole object of one of `groups`."""
    text = doc.read_text()
    found = []
    for match in YAML_BLOCK.finditer(text):
        body = match.group(1)
        try:
            objects = list(yaml.safe_load_all(body))
        except yaml.YAMLError as error:
            line = text.count("\n", 0, match.start(1)) + 1
            raise SystemExit(f"{doc}:{line}: the YAML block does not parse: {error}") from None
        if any(api_group(obj) in groups for obj in objects):
            found.append((text.count("\n", 0, match.start(1)) + 1, body))
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    outdir, groups = Path(argv[0]), set(argv[1].split(","))
    outdir.mkdir(parents=True, exist_ok=True)
    for doc in map(Path, argv[2:]):
        for line, body in blocks_with_objects(doc, groups):
            target = outdir / f"{doc.as_posix().replace('/', '_')}-line{line}.yaml"
            target.write_text(body)
            print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
