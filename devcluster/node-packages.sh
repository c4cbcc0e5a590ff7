#!/usr/bin/env bash
# Installs, from Debian, what the devcluster's node and the image build need, and nothing twice:
#
#   containerd, runc                  the container runtime of the node (cgroup v1 capable)
#   containernetworking-plugins       the CNI bridge, host-local and loopback plugins
#   buildah                           builds the project image from the Dockerfile (no daemon)
#   mmdebstrap                        makes the image's base from Debian packages (image.sh)
#
# Run as root (CI machines are); it prints the apt command otherwise.
set -euo pipefail
packages=(containerd runc containernetworking-plugins buildah mmdebstrap)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "devcluster: missing Debian packages; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "devcluster: installing ${missing[*]}" >&2
apt-get update -qq
# No recommends: podman, slirp4netns and friends are not needed (buildah runs as root, chroot
# isolation; containerd is started by the devcluster, not by systemd).
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The package's unit would start a system-wide containerd on machines with systemd; the
# devcluster runs its own per cluster and does not need it.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
