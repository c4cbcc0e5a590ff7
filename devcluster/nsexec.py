"""Container entry point, run by the process-kubelet inside a private mount namespace.

Started as ``unshare --mount --propagation private -- python -I nsexec.py SPEC.json`` (or with
``--user --map-root-user`` when not root). It bind-mounts the pod's volumes at the paths the
manifest names, then ``execve``s the container command. Only this process's namespace sees the
mounts; they vanish with it.

It is run as a plain script (not ``-m devcluster.nsexec``) so that it needs no PYTHONPATH that
could leak into the container, and it uses the standard library only.

A mount target that does not exist is made without touching the host: the nearest existing
ancestor directory is "shadowed" by a tmpfs holding bind mounts of all of its entries, and the
missing path is created inside that tmpfs. This is how ``/dev/termination-log`` appears without
creating anything in the host's ``/dev``, while ``/dev/null`` and friends keep working. For a
path directly under ``/`` (``/migrations``) the root itself is shadowed, and the process chroots
into the copy.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2); raises OSError with the path so a failing pod log says what went wrong."""
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")


def bind(source: str, target: str, readonly: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC, None)
    if readonly:
        # A bind mount takes the read-only flag only on a second, remounting call.
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)


class Shadower:
    """Makes missing paths appear by shadowing their nearest existing ancestor with a tmpfs."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.count = 0

    def shadow(self, directory: Path) -> None:
        stage = self.scratch / f"shadow{self.count}"
        self.count += 1
        stage.mkdir(parents=True, exist_ok=True)
        st = directory.stat()
        mount("tmpfs", str(stage), "tmpfs", 0, f"mode={st.st_mode & 0o7777:o}")
        os.chown(stage, st.st_uid, st.st_gid)
        for entry in os.scandir(directory):
            self._copy_entry(entry, stage / entry.name)
        if directory != Path("/"):
            mount(str(stage), str(directory), None, MS_MOVE, None)
            return
        # The root itself: move the copy over "/" and chroot into it (what switch_root does).
        # Paths stay valid: every top-level entry is bound into the copy.
        os.chdir(stage)
        mount(".", "/", None, MS_MOVE, None)
        os.chroot(".")
        os.chdir("/")

    @staticmethod
    def _copy_entry(entry: os.DirEntry[str], dest: Path) -> None:
        if entry.is_symlink():
            dest.symlink_to(Path(entry.path).readlink())
            return
        if entry.is_dir():
            dest.mkdir()
        else:
            dest.touch()
        # Recursive, so submounts such as /dev/pts or /dev/shm come along.
        mount(entry.path, str(dest), None, MS_BIND | MS_REC, None)

    def ensure(self, target: Path, is_dir: bool) -> None:
        """Create ``target`` (a directory or an empty file) so something can be mounted on it."""
        if target.exists():
            return
        ancestor = target.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        self.shadow(ancestor)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()


def _hides_host_paths(target: Path, host_paths: list[Path]) -> bool:
    return any(path == target or target in path.parents for path in host_paths)


def mount_order(mounts: list[dict[str, Any]], scratch: Path) -> list[dict[str, Any]]:
    """Parents before children, so a volume mounted inside another volume's path stays
    visible; but a volume mounted over a directory that holds the host side of other mounts
    (an emptyDir on /tmp while the kubelet's state lives in /tmp) goes last, or it would hide
    their sources."""
    host_paths = [scratch, *(Path(m["source"]) for m in mounts)]
    return sorted(
        mounts,
        key=lambda m: (
            _hides_host_paths(Path(m["target"]), host_paths),
            len(Path(m["target"]).parts),
        ),
    )


def apply_mounts(spec: dict[str, Any]) -> None:
    shadower = Shadower(Path(spec["scratch"]))
    # The host directories the container's program lives in (this checkout, its virtualenv),
    # held open before a volume can cover them (an emptyDir on /tmp while the checkout is in
    # /tmp), then bound back: a real kubelet runs an image, here the program is on the host.
    keep = {Path(p): os.open(p, os.O_PATH) for p in spec.get("keep", []) if Path(p).is_dir()}
    mounts = mount_order(spec["mounts"], Path(spec["scratch"]))
    for m in mounts:
        source, target = m["source"], Path(m["target"])
        shadower.ensure(target, Path(source).is_dir())
        bind(source, str(target), bool(m.get("readonly")))
    targets = [Path(m["target"]) for m in mounts]
    for path, fd in keep.items():
        if any(t == path or t in path.parents for t in targets):
            shadower.ensure(path, True)
            bind(f"/proc/self/fd/{fd}", str(path), True)
    workdir = Path(spec["workdir"])
    shadower.ensure(workdir, True)


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        apply_mounts(spec)
        os.chdir(spec["workdir"])
        env: dict[str, str] = spec["env"]
        os.execvpe(spec["argv"][0], spec["argv"], env)
    except OSError as exc:
        # Exit 127/126 like a shell would for "not found" / "cannot run", so the pod fails
        # with an exit code and this line in its log.
        print(f"devcluster: cannot start container: {exc}", file=sys.stderr)
        sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    main(sys.argv)
