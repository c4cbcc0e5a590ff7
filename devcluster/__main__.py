"""CLI: ``python -m devcluster up|down|status|image [--dir DIR]`` (default $DEVCLUSTER_DIR, or
~/.cache/migrate-safe/devcluster/run).

``image`` builds (or reuses) the project image (image.py) and prints its reference and archive;
with ``--load`` it also imports it into the running cluster's node, tagged
``localhost/migrate-safe:dev`` as well, the name devcluster/examples/ use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devcluster import cluster, image
from devcluster.errors import ClusterError


def _up(root: Path) -> int:
    try:
        c = cluster.up(root)
    except ClusterError as exc:
        print(f"devcluster: {exc}", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={c.kubeconfig}")
    print(f"export PATH={c.bin_dir}:$PATH")
    print(f"# logs: {c.logs}/", file=sys.stderr)
    return 0


def _down(root: Path) -> int:
    stopped = cluster.down(root)
    print(f"devcluster: stopped {', '.join(stopped) or 'nothing (not running)'}", file=sys.stderr)
    return 0


def _status(root: Path) -> int:
    rows = cluster.status(root)
    if not rows:
        print(f"devcluster: not running ({root})")
        return 3
    for name, pid, state in rows:
        print(f"{name:<24} pid {pid:<8} {state}")
    c = cluster.Cluster(root)
    print(f"KUBECONFIG={c.kubeconfig}")
    return 0 if c.running() else 1


def _image(root: Path, load: bool) -> int:
    try:
        built = image.ensure_image()
        if load:
            cluster.Cluster(root).load_image(built, alias=image.DEV_TAG)
    except (image.ImageError, ClusterError) as exc:
        print(f"devcluster: {exc}", file=sys.stderr)
        return 1
    print(f"image={built.ref}")
    print(f"archive={built.archive}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    parser.add_argument("command", choices=("up", "down", "status", "image"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="state directory (default: $DEVCLUSTER_DIR or %(default)s)",
    )
    parser.add_argument(
        "--load", action="store_true", help="image: also import it into the cluster's node"
    )
    args = parser.parse_args(argv)
    root = cluster.state_dir(args.dir).resolve()
    if args.command == "image":
        return _image(root, args.load)
    commands = {"up": _up, "down": _down, "status": _status}
    return commands[args.command](root)


if __name__ == "__main__":
    sys.exit(main())
