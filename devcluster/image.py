"""The project's image, built on this machine with buildah from the Dockerfile (no Docker
engine, no registry), checked, and kept as an archive the devcluster's node imports.

    python -m devcluster image [--load]   # build or reuse; prints the reference and archive

Three steps, each cached outside the checkout under ``$DEVCLUSTER_CACHE/images`` (default
``~/.cache/migrate-safe/devcluster/images``) and keyed by what goes into it:

1. **base** (``base-<key>.tar``): the Dockerfile's default base is the official
   ``python:<minor>-slim`` image, which needs a registry. Here the same layout — Debian trixie,
   ``python`` on PATH with ``venv``, apt configured like Debian's container images (no docs, no
   package cache) — is made from Debian packages by mmdebstrap and passed as ``PYTHON_IMAGE``.
2. **image** (``migrate-safe-<key>.docker.tar``): ``buildah bud --isolation chroot`` of the
   unchanged Dockerfile; the key hashes the Dockerfile and every file of the build context. The
   host's CA bundle reaches the build only as a build secret (a proxy that intercepts TLS breaks
   pip otherwise); nothing of it may stay in the image, which the checks prove.
3. **checks**, run with runc as the node would run the image: the entrypoint and user in the
   image config, ``migrate-safe --version``, ``pg_dump --version``, the imports the operator
   needs, UID 10001 with a read-only root filesystem and only /tmp writable, no proxy CA.

Buildah keeps its layers in ``images/storage``: a changed source file rebuilds only the layers
after ``COPY operator/``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path.home() / ".cache" / "migrate-safe" / "devcluster"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_SECRET_ID = "ca-certificates"  # the id the Dockerfile's RUN --mount=type=secret names
IMAGE_NAME = "localhost/migrate-safe"
BASE_NAME = "localhost/migrate-safe-base"
PAUSE_NAME = "localhost/devcluster-pause"
IMAGE_USER = "10001:10001"
DEV_TAG = f"{IMAGE_NAME}:dev"  # what `python -m devcluster image --load` also tags
KEEP_IMAGES = 3  # newest project images kept (archives and buildah images)
KEEP_CACHE_SECONDS = 6 * 3600  # buildah's intermediate images (the layer cache) kept that long

# The base: Debian trixie (the official slim image's release, so the Dockerfile's default
# PG_MAJOR=17 client comes from the same archive) with Python, venv and CA certificates.
SUITE = "trixie"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# As in Debian's slim container images: no documentation, manual pages or translations, also
# for what the Dockerfile installs later (the dpkg configuration stays in the base).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
# As in Debian's container images: apt deletes the downloaded packages after installing them
# (else every `apt-get install` layer keeps its .deb files) and fetches no translations.
APT_CONFIG = {
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
}
# With that configuration apt's own clean-up misses what mmdebstrap downloaded.
CLEAN_HOOK = 'rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin'
BASE_ENV = ("LANG=C.UTF-8",)


class ImageError(RuntimeError):
    """A build or a check failed; the message says which and shows the output."""


def log(text: str) -> None:
    print(f"[devcluster/image] {text}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    env = os.environ.get("DEVCLUSTER_CACHE")
    return (Path(env) if env else DEFAULT_CACHE) / "images"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:12]


def _run(argv: list[str], *, capture: bool = False, check: bool = True) -> str:
    """Run a build tool; its progress goes to stderr, its failure raises with the command."""
    done = subprocess.run(
        argv,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=subprocess.PIPE if capture else sys.stderr,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        detail = (done.stderr or "")[-3000:] if capture else "(output above)"
        raise ImageError(f"{argv[0]} failed ({done.returncode}): {' '.join(argv)}\n{detail}")
    return done.stdout if capture else ""


@dataclass(frozen=True)
class Buildah:
    """buildah with its storage in the cache (layers survive between builds and runs)."""

    storage: Path

    def __call__(self, *args: str, capture: bool = False, check: bool = True) -> str:
        argv = [
            "buildah",
            "--root",
            str(self.storage / "root"),
            "--runroot",
            str(self.storage / "run"),
            "--storage-driver",
            "overlay",
            *args,
        ]
        return _run(argv, capture=capture, check=check)

    def has(self, ref: str) -> bool:
        out = self("images", "--quiet", ref, capture=True, check=False)
        return bool(out.strip())

    @contextmanager
    def mounted(self, ref: str) -> Iterator[Path]:
        """The image's root filesystem, read from a throw-away working container."""
        container = self("from", "--pull-never", ref, capture=True).strip()
        try:
            yield Path(self("mount", container, capture=True).strip())
        finally:
            self("umount", container, check=False, capture=True)
            self("rm", container, check=False, capture=True)


@dataclass(frozen=True)
class RunResult:
    code: int
    output: str


@dataclass(frozen=True)
class Image:
    """A built image: what pods name, and the archive a node imports."""

    ref: str
    archive: Path


def buildah() -> Buildah:
    return Buildah(cache_root() / "storage")


def _publish(tmp: Path, dest: Path) -> None:
    """Rename into place: an interrupted build never leaves a half-written cache entry."""
    tmp.replace(dest)


# ---- 1. the base --------------------------------------------------------------------------


def base_key() -> str:
    recipe = json.dumps(
        [SUITE, MIRRORS, BASE_PACKAGES, DPKG_OPTIONS, APT_CONFIG, CLEAN_HOOK, BASE_ENV],
        sort_keys=True,
    )
    return _digest(recipe.encode())


def _mmdebstrap(dest: Path) -> None:
    hooks = [
        f'printf %s {_shell_quote(text)} > "$1/etc/apt/apt.conf.d/{name}"'
        for name, text in APT_CONFIG.items()
    ]
    hooks.append(CLEAN_HOOK)
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt={opt}" for opt in DPKG_OPTIONS),
        *(f"--customize-hook={hook}" for hook in hooks),
        SUITE,
        str(dest),
        *MIRRORS,
    ]
    _run(argv)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def ensure_base(tool: Buildah) -> str:
    """The base image reference, built (mmdebstrap, about 3 minutes) and imported if needed."""
    key = base_key()
    ref = f"{BASE_NAME}:{SUITE}-{key}"
    if tool.has(ref):
        return ref
    tarball = cache_root() / f"base-{SUITE}-{key}.tar"
    if not tarball.exists():
        started = time.monotonic()
        log(f"building the base root filesystem ({SUITE}, {', '.join(BASE_PACKAGES)})")
        tmp = tarball.with_suffix(".tmp.tar")
        _mmdebstrap(tmp)
        _publish(tmp, tarball)
        log(f"base root filesystem built in {time.monotonic() - started:.0f}s")
    container = tool("from", "scratch", capture=True).strip()
    try:
        tool("add", container, str(tarball), "/")
        env = [a for e in BASE_ENV for a in ("--env", e)]
        tool("config", *env, "--cmd", "python3", container)
        tool("commit", "--quiet", container, ref, capture=True)
    finally:
        tool("rm", container, check=False, capture=True)
    return ref


# ---- 2. the image -------------------------------------------------------------------------


def context_files(root: Path) -> list[Path]:
    """The files .dockerignore lets into the build context. The project's .dockerignore
    excludes everything ("*"), re-includes paths ("!path") and drops caches by name at any depth
    ("**/name"); that is the subset of the syntax understood here."""
    lines = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    included = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    dropped = [line[3:] for line in lines if line.startswith("**/")]
    files: list[Path] = []
    for entry in included:
        path = root / entry
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            parts = file.relative_to(root).parts
            if file.is_file() and not any(fnmatch(p, n) for p in parts for n in dropped):
                files.append(file)
    return files


def image_key(root: Path, base: str) -> str:
    parts = [base.encode()]
    for file in [root / "Dockerfile", root / ".dockerignore", *context_files(root)]:
        parts += [str(file.relative_to(root)).encode(), file.read_bytes()]
    return _digest(*parts)


def project_version(root: Path) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def require_tools() -> None:
    missing = [t for t in ("buildah", "mmdebstrap", "runc") if shutil.which(t) is None]
    if missing:
        raise ImageError(
            f"missing {', '.join(missing)}: run devcluster/node-packages.sh (as root; apt)"
        )


def ensure_image(root: Path = REPO_ROOT) -> Image:
    """Build (or reuse) the project image from ``root``'s Dockerfile; check it before caching."""
    require_tools()
    tool = buildah()
    base = ensure_base(tool)
    key = image_key(root, base)
    ref = f"{IMAGE_NAME}:{project_version(root)}-{key}"
    archive = cache_root() / f"migrate-safe-{key}.docker.tar"
    if archive.exists():
        return Image(ref, archive)
    with _building(archive):
        if archive.exists():  # built by another process while this one waited
            return Image(ref, archive)
        return _build(tool, root, base, ref, archive)


@contextmanager
def _building(archive: Path) -> Iterator[None]:
    """One build of an image at a time on this machine: two test runs or benchmarks that
    start together would otherwise build the same image into the same temporary file."""
    with archive.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(tool: Buildah, root: Path, base: str, ref: str, archive: Path) -> Image:
    started = time.monotonic()
    log(f"building {ref} from {root / 'Dockerfile'} (base {base})")
    argv = ["bud", "--isolation", "chroot", "--network", "host", "--layers", "--pull-never"]
    argv += ["--build-arg", f"PYTHON_IMAGE={base}"]
    if HOST_CA_BUNDLE.exists():
        # Mounted for the RUN that names it, and in no layer (the checks look for it).
        argv += ["--secret", f"id={CA_SECRET_ID},src={HOST_CA_BUNDLE}"]
    tool(*argv, "--tag", ref, str(root))
    log(f"built in {time.monotonic() - started:.0f}s")
    for line in check_image(tool, ref):
        log(f"check: {line}")
    _save(tool, ref, archive)
    # A docker-archive holds the layers uncompressed: its size is what `docker images` shows.
    log(f"{ref}: {archive.stat().st_size / 1e6:.0f} MB ({archive})")
    prune(tool, "migrate-safe")
    return Image(ref, archive)


def prune(tool: Buildah, name: str) -> None:
    """Every change of the code makes a new image: keep the newest few archives and images,
    and the build cache (buildah's intermediate images) of the last hours, so the cache does
    not grow without end while the dependencies' layer is still reused."""
    archives = sorted(
        cache_root().glob(f"{name}-*.docker.tar"), key=lambda a: a.stat().st_mtime, reverse=True
    )
    for old in archives[KEEP_IMAGES:]:
        old.unlink(missing_ok=True)
    kept = {
        a.name.removeprefix(f"{name}-").removesuffix(".docker.tar") for a in archives[:KEEP_IMAGES]
    }
    for image in json.loads(tool("images", "--all", "--json", capture=True) or "[]"):
        names = image.get("names") or []
        ours = [n for n in names if n.startswith(f"localhost/{name}:")]
        old_build = not names and time.time() - image["created"] > KEEP_CACHE_SECONDS
        if (ours and all(n.rsplit("-", 1)[-1] not in kept for n in ours)) or old_build:
            tool("rmi", "--force", image["id"], capture=True, check=False)


def _save(tool: Buildah, ref: str, archive: Path) -> None:
    tmp = archive.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tool("push", "--quiet", ref, f"docker-archive:{tmp}:{ref}", capture=True)
    _publish(tmp, archive)


# ---- 3. checks ----------------------------------------------------------------------------

PROBE = """
grep '^Uid:' /proc/self/status
if touch /probe 2>/dev/null; then echo 'the root filesystem is writable'; exit 1; fi
touch /tmp/probe && echo '/tmp is writable'
"""
IMPORTS = "import migrate_safe.k8s.handlers, pglast, psycopg; pglast.parse_sql('SELECT 1')"


def check_image(tool: Buildah, ref: str) -> list[str]:
    """Run the image as the node will; raise ImageError naming the first check that fails."""
    config = json.loads(tool("inspect", "--type", "image", ref, capture=True))["OCIv1"]["config"]
    entrypoint = config.get("Entrypoint") or []
    _expect(entrypoint == ["migrate-safe"], f"entrypoint is {entrypoint}, not ['migrate-safe']")
    _expect(config.get("User") == IMAGE_USER, f"USER is {config.get('User')!r}, not {IMAGE_USER}")
    report = [f"entrypoint {entrypoint}, user {IMAGE_USER}"]
    with tool.mounted(ref) as rootfs:
        runs = {
            "version": [*entrypoint, "--version"],
            "pg_dump": ["pg_dump", "--version"],
            "imports": ["python", "-c", IMPORTS],
            "probe": ["sh", "-c", PROBE],
        }
        results = {name: run_in_image(rootfs, config, argv) for name, argv in runs.items()}
        for name, result in results.items():
            _expect(result.code == 0, f"{runs[name]} exited {result.code}:\n{result.output}")
            output = "; ".join(result.output.split("\n")).strip("; ")
            report.append(f"{name}: {output or 'ok'}")
        _expect("Uid:\t10001\t10001\t10001\t10001" in results["probe"].output, "not UID 10001")
        _expect(not (rootfs / "run" / "secrets").exists(), "/run/secrets is in the image")
        report.append(_no_proxy_ca(rootfs))
    return report


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise ImageError(f"image check failed: {problem}")


def _certificates(*bundles: Path) -> set[bytes]:
    """The certificates (DER) in PEM ``bundles``."""
    found = set()
    for bundle in bundles:
        text = bundle.read_text(errors="replace") if bundle.is_file() else ""
        for block in text.split("-----BEGIN CERTIFICATE-----")[1:]:
            body = block.split("-----END CERTIFICATE-----")[0]
            found.add(base64.b64decode("".join(body.split())))
    return found


def _no_proxy_ca(rootfs: Path) -> str:
    """The CA certificates this machine added to Debian's set (a proxy's) are in none of the
    image's files, in PEM or DER form: the build secret left nothing behind."""
    debian = _certificates(*Path("/usr/share/ca-certificates").rglob("*.crt"))
    added = _certificates(HOST_CA_BUNDLE) - debian
    if not added:
        return "this machine trusts no CA beyond Debian's: nothing to look for"
    needles = []
    for der in added:
        pem_lines = textwrap.wrap(base64.b64encode(der).decode(), 64)
        needles += [
            der[len(der) // 2 : len(der) // 2 + 48],
            pem_lines[len(pem_lines) // 2].encode(),
        ]
    for file in rootfs.rglob("*"):
        if file.is_file() and not file.is_symlink():
            data = file.read_bytes()
            leaked = any(needle in data for needle in needles)
            _expect(not leaked, f"{file.relative_to(rootfs)} holds a CA certificate of the host")
    return f"none of the {len(added)} CA certificate(s) this machine adds is in the image"


def run_in_image(rootfs: Path, config: dict[str, object], argv: list[str]) -> RunResult:
    """Run ``argv`` with runc as the node runs a pod's container: the image's user and
    environment, a read-only root filesystem, a tmpfs on /tmp, no capabilities."""
    user = str(config.get("User") or "0:0")
    uid, _, gid = user.partition(":")
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": int(uid), "gid": int(gid or uid)},
            "args": argv,
            "env": list(config.get("Env") or []),  # type: ignore[call-overload]
            "cwd": str(config.get("WorkingDir") or "/"),
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "image-check",
        "mounts": [
            _mount("/proc", "proc", []),
            _mount("/dev", "tmpfs", ["nosuid", "mode=755", "size=1m"]),
            _mount("/dev/pts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]),
            _mount("/sys", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            _mount("/tmp", "tmpfs", ["nosuid", "nodev", "mode=1777", "size=64m"]),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    with tempfile.TemporaryDirectory(prefix="devcluster-image-check-") as tmp:
        bundle = Path(tmp)
        (bundle / "config.json").write_text(json.dumps(spec))
        name = f"image-check-{os.getpid()}-{time.monotonic_ns()}"
        done = subprocess.run(
            ["runc", "--root", str(bundle / "state"), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return RunResult(done.returncode, done.stdout + done.stderr)


def _mount(destination: str, kind: str, options: list[str]) -> dict[str, object]:
    return {"destination": destination, "type": kind, "source": kind, "options": options}


# ---- other images: the node's pause image, applications' images in tests -------------------


def ensure_pause(pause_binary: Path) -> Image:
    """The node's sandbox image: only the pause program the devcluster builds (build.sh)."""
    key = _digest(pause_binary.read_bytes())
    ref = f"{PAUSE_NAME}:{key}"
    archive = cache_root() / f"pause-{key}.docker.tar"
    if not archive.exists():
        tool = buildah()
        container = tool("from", "scratch", capture=True).strip()
        try:
            tool("copy", "--chmod", "0755", container, str(pause_binary), "/pause")
            tool("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
            tool("commit", "--quiet", container, ref, capture=True)
        finally:
            tool("rm", container, check=False, capture=True)
        _save(tool, ref, archive)
    return Image(ref, archive)


def ensure_context_image(name: str, containerfile: str, files: dict[str, bytes]) -> Image:
    """An image from a Containerfile and the files of its context, ``FROM`` the base
    (``{base}`` in the text names it): e.g. an application image that carries migrations."""
    tool = buildah()
    base = ensure_base(tool)
    text = containerfile.replace("{base}", base)
    parts = [text.encode()] + [p for f, data in sorted(files.items()) for p in (f.encode(), data)]
    key = _digest(*parts)
    ref = f"localhost/{name}:{key}"
    archive = cache_root() / f"{name}-{key}.docker.tar"
    if archive.exists():
        return Image(ref, archive)
    with tempfile.TemporaryDirectory(prefix="devcluster-context-") as tmp:
        context = Path(tmp)
        (context / "Containerfile").write_text(text)
        for rel, data in files.items():
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            (context / rel).write_bytes(data)
        tool(
            "bud",
            "--isolation",
            "chroot",
            "--pull-never",
            "--quiet",
            "--tag",
            ref,
            "--file",
            str(context / "Containerfile"),
            str(context),
            capture=True,
        )
    _save(tool, ref, archive)
    return Image(ref, archive)
