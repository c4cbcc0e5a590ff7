"""The devcluster's node: containerd + runc + the CNI bridge from Debian, under the real kubelet
(started by cluster.py), in a mount namespace of its own.

Everything a node owns is per cluster, so that several clusters run side by side:

* a **slot** ``N`` (0-63), held by an exclusive lock on ``/run/devcluster/slot-N.lock`` for as
  long as the cluster's node agent lives (a crashed cluster frees its slot by itself; the next
  one to take it clears what it left behind);
* a **bridge** ``devclusterN`` with the node's address ``10.77.N.1/24``. Pods get addresses from
  ``10.77.N.128`` up (CNI bridge + host-local). The Service range is ``10.77.N.0/25``, so the
  ``kubernetes`` Service's ClusterIP is the node's own address, where the node agent forwards
  443 to the apiserver on loopback (there is no kube-proxy);
* a **runtime directory** ``/run/devcluster/N`` (unix sockets must have short paths): the
  containerd socket and state (network namespaces included), the kubelet's root directory
  (pods' volumes), CNI's IP allocations;
* a **cgroup root** ``/devcluster-N`` (cgroup v1, cgroupfs driver) that holds every pod;
* containerd's **images and snapshots** in ``<state>/node/containerd``.

containerd starts in a new mount namespace (``unshare --propagation private``) and the kubelet
joins it, so the node's mounts — container root filesystems, Secret and ConfigMap volumes,
network namespace files — are never seen by this machine and vanish with the node's processes.
Paths the kubelet and containerd hard-code (``/var/lib/kubelet``, ``/var/log/containers``,
``/run/containerd``, CNI's ``/var/lib/cni`` and ``/etc/cni/net.d``) are bind-mounted from the
runtime directory inside that namespace; on the host they are at most empty directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devcluster.errors import ClusterError
from devcluster.image import Image

RUNTIME_ROOT = Path("/run/devcluster")
SLOTS = 64
CNI_BIN = Path("/usr/lib/cni")
CGROUP_FS = Path("/sys/fs/cgroup")
REQUIRED_PROGRAMS = ("containerd", "runc", "ctr", "ip", "unshare", "nsenter", "buildah")
# Host paths the kubelet, containerd's shim and CNI use whatever their configuration says;
# inside the node's mount namespace each is bound to the node's own directory.
HARD_CODED = {
    "/var/lib/kubelet": "var-lib-kubelet",
    "/var/log/containers": "container-logs",
    "/run/containerd": "run-containerd",
    "/var/lib/cni": "var-lib-cni",
    "/etc/cni/net.d": "etc-cni",
}


@dataclass(frozen=True)
class Slot:
    """The node's share of this machine: addresses, interfaces, directories, cgroups."""

    index: int

    @property
    def bridge(self) -> str:
        return f"devcluster{self.index}"

    @property
    def node_ip(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def subnet(self) -> str:
        return f"10.77.{self.index}.0/24"

    @property
    def service_range(self) -> str:
        # Its first address (the `kubernetes` Service) is the node's own.
        return f"10.77.{self.index}.0/25"

    @property
    def pod_range(self) -> tuple[str, str]:
        return f"10.77.{self.index}.128", f"10.77.{self.index}.254"

    @property
    def run_dir(self) -> Path:
        return RUNTIME_ROOT / str(self.index)

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def cgroup_root(self) -> str:
        return f"/devcluster-{self.index}"

    def to_json(self) -> int:
        return self.index


def check_host() -> None:
    """The node needs root (bridges, mounts, cgroups) and the Debian packages."""
    if os.geteuid() != 0:
        raise ClusterError("the devcluster node needs root (containerd, the kubelet, a bridge)")
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing or not (CNI_BIN / "bridge").exists():
        raise ClusterError(
            f"missing {', '.join(missing) or 'the CNI plugins'}: run devcluster/node-packages.sh "
            "(apt: containerd runc containernetworking-plugins buildah)"
        )


def lock_slot(slot: Slot) -> int | None:
    """The slot's lock, taken without waiting; None when a living cluster holds it."""
    RUNTIME_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUNTIME_ROOT / f"slot-{slot.index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_slot() -> tuple[Slot, int]:
    """A free slot and the locked file descriptor that holds it (the node agent inherits it)."""
    taken = _host_networks()
    for index in range(SLOTS):
        slot = Slot(index)
        if any(ipaddress.ip_network(slot.subnet).overlaps(net) for net in taken):
            continue
        fd = lock_slot(slot)
        if fd is None:
            continue
        release(slot)  # whatever a cluster that died in this slot left behind
        return slot, fd
    raise ClusterError(f"all {SLOTS} devcluster slots are in use (see {RUNTIME_ROOT})")


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Networks this machine routes to already, not counting devcluster bridges."""
    out = _ip("-4", "-o", "route", "show", capture=True)
    nets = []
    for line in out.splitlines():
        words = line.split()
        if words[0] == "default" or "devcluster" in words:
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(words[0], strict=False))
    return nets


def _ip(*args: str, capture: bool = False, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout if capture else ""


def create_network(slot: Slot) -> None:
    """The node's bridge, holding the node's address; the CNI bridge plugin attaches pods."""
    _ip("link", "add", slot.bridge, "type", "bridge")
    _ip("addr", "add", f"{slot.node_ip}/24", "dev", slot.bridge)
    _ip("link", "set", slot.bridge, "up")


# ---- containerd -------------------------------------------------------------------------------


def write_containerd_config(slot: Slot, node_dir: Path, sandbox_image: str) -> Path:
    (node_dir / "cni").mkdir(parents=True, exist_ok=True)
    first, last = slot.pod_range
    range_ = {"subnet": slot.subnet, "rangeStart": first, "rangeEnd": last, "gateway": slot.node_ip}
    conflist = {
        "cniVersion": "1.0.0",
        "name": "devcluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": slot.bridge,
                "isGateway": True,
                # Pods talk to the node only; nothing needs masquerading (or iptables).
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[range_]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(slot.run_dir / "ipam"),
                },
            }
        ],
    }
    (node_dir / "cni" / "10-devcluster.conflist").write_text(json.dumps(conflist, indent=2))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = {json.dumps(str(node_dir / "containerd"))}
state = {json.dumps(str(slot.run_dir / "containerd"))}
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = {json.dumps(str(slot.containerd_socket))}

[ttrpc]
  address = {json.dumps(str(slot.run_dir / "containerd-ttrpc.sock"))}

[{cri}]
  sandbox_image = {json.dumps(sandbox_image)}
  # No CAP_SYS_RESOURCE in some sandboxes: never lower a container's OOM score below ours.
  restrict_oom_score_adj = true
  disable_apparmor = true
  # Network namespaces in the node's own state directory, not in the host's /run/netns.
  netns_mounts_under_state_dir = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # The kubelet's cgroupfs driver (cgroup v1): no systemd.
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = {json.dumps(str(CNI_BIN))}
  conf_dir = {json.dumps(str(node_dir / "cni"))}

[plugins."io.containerd.internal.v1.opt"]
  path = {json.dumps(str(node_dir / "containerd-opt"))}
"""
    path = node_dir / "containerd.toml"
    path.write_text(config)
    return path


def containerd_argv(slot: Slot, config: Path) -> list[str]:
    """containerd in a new mount namespace whose hard-coded paths are the node's own."""
    binds = []
    for host_path, name in HARD_CODED.items():
        private = slot.run_dir / name
        binds.append(
            f"mkdir -p {shlex.quote(host_path)} {shlex.quote(str(private))} && "
            f"mount --bind {shlex.quote(str(private))} {shlex.quote(host_path)}"
        )
    script = " && ".join([*binds, 'exec "$@"'])
    containerd = ["containerd", "--config", str(config)]
    unshare = ["unshare", "--mount", "--propagation", "private", "--"]
    return [*unshare, "sh", "-c", script, "sh", *containerd]


def in_node_namespace(containerd_pid: int, argv: list[str]) -> list[str]:
    """``argv`` run in the node's mount namespace (the kubelet must see containerd's mounts)."""
    return ["nsenter", f"--target={containerd_pid}", "--mount", "--", *argv]


def ctr(slot: Slot, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        ["ctr", "--address", str(slot.containerd_socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def import_image(slot: Slot, built: Image, alias: str | None = None) -> None:
    """Load an image archive (docker-archive, as devcluster/image.py writes) into the node."""
    ctr(slot, "images", "import", str(built.archive))
    if alias:
        ctr(slot, "images", "tag", "--force", built.ref, alias)


def containerd_ready(slot: Slot) -> bool:
    if not slot.containerd_socket.exists():
        return False
    try:
        ctr(slot, "version", timeout=5)
    except (ClusterError, subprocess.TimeoutExpired):
        return False
    return True


# ---- the kubelet ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeletPorts:
    server: int
    healthz: int


def write_kubelet_config(
    slot: Slot, node_dir: Path, pki_dir: Path, logs_dir: Path, ports: KubeletPorts
) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubernetes 1.35 refuses cgroup v1 unless told; this machine has nothing else.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": slot.cgroup_root,
        "containerRuntimeEndpoint": f"unix://{slot.containerd_socket}",
        "address": slot.node_ip,
        "port": ports.server,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(logs_dir),
        "volumePluginDir": str(slot.run_dir / "volume-plugins"),
        "failSwapOn": False,
        # Lowering its own OOM score needs CAP_SYS_RESOURCE, which sandboxes may not grant.
        "oomScoreAdj": 0,
        "hairpinMode": "none",
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        # The images are imported, never pulled: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Test machines run with full disks more often than real nodes do.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "resolvConf": "/etc/resolv.conf",
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
    }
    path = node_dir / "kubelet.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def kubelet_argv(
    bin_dir: Path, slot: Slot, config: Path, kubeconfig: Path, node_name: str
) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={slot.kubelet_root}",
        f"--cert-dir={slot.kubelet_root / 'pki'}",
        f"--hostname-override={node_name}",
        f"--node-ip={slot.node_ip}",
        "--v=1",
    ]


def make_cgroup_root(slot: Slot) -> None:
    """The kubelet wants its cgroup root to exist in every hierarchy."""
    for hierarchy in _hierarchies():
        (hierarchy / slot.cgroup_root.lstrip("/")).mkdir(exist_ok=True)


def _hierarchies() -> list[Path]:
    # cgroup v1 (the empty v2 hierarchy some machines also mount holds nothing of ours).
    return [h for h in CGROUP_FS.iterdir() if h.is_dir() and h.name != "unified"]


# ---- tearing down -----------------------------------------------------------------------------


def kill_pods(slot: Slot) -> None:
    """SIGKILL every process in the node's cgroups (the pods' containers and pause processes),
    then remove the cgroups, deepest first."""
    for _ in range(50):
        pids = _cgroup_pids(slot)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for hierarchy in _hierarchies():
        root = hierarchy / slot.cgroup_root.lstrip("/")
        if root.is_dir():
            for group in sorted(_groups(root), reverse=True):
                with contextlib.suppress(OSError):
                    group.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()


def _cgroup_pids(slot: Slot) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / slot.cgroup_root.lstrip("/")
        for group in _groups(root):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def _groups(root: Path) -> list[Path]:
    """A cgroup and every cgroup below it. Pods' cgroups vanish while they are walked, as
    their containers stop: os.walk passes over a directory that is gone where rglob raises."""
    return [Path(top) for top, _, _ in os.walk(root)]


def shim_pids(slot: Slot) -> list[int]:
    """containerd's shims of this node: they detach from containerd, but name its socket."""
    address = str(slot.containerd_socket).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                found.append(int(entry.name))
    return found


def kill_shims(slot: Slot) -> None:
    for pid in shim_pids(slot):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def release(slot: Slot) -> None:
    """Remove the slot's bridge, cgroups and runtime directory (its processes are gone; the
    mounts went with the node's mount namespace)."""
    kill_pods(slot)
    kill_shims(slot)
    _ip("link", "del", slot.bridge, check=False)
    shutil.rmtree(slot.run_dir, ignore_errors=True)
