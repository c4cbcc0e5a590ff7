"""CLI: ``python -m devcluster up|down|status [--dir DIR]`` (default $DEVCLUSTER_DIR, or
~/.cache/migrate-safe/devcluster/run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devcluster import cluster


def _up(root: Path) -> int:
    try:
        c = cluster.up(root)
    except cluster.ClusterError as exc:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="state directory (default: $DEVCLUSTER_DIR or %(default)s)",
    )
    args = parser.parse_args(argv)
    root = cluster.state_dir(args.dir).resolve()
    commands = {"up": _up, "down": _down, "status": _status}
    return commands[args.command](root)


if __name__ == "__main__":
    sys.exit(main())
