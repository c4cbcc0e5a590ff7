#!/usr/bin/env bash
# Build (or reuse) the pinned devcluster binaries and print the directory that holds them.
#
#   devcluster/build.sh            -> prints .../<key>/bin on stdout (progress goes to stderr)
#
# Binaries: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
# (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm and kubeconform, each group from its
# own wrapper module under devcluster/gomod/, and the node's pause program (gomod/pause, no
# dependencies). They are cached outside the checkout, in
# ${DEVCLUSTER_CACHE:-~/.cache/migrate-safe/devcluster}/<key>/bin, where <key> names every pinned
# version, the Go version and a hash of the wrapper go.mod/go.sum files and of this script.
# A cache hit runs no go command except `go env GOVERSION`: a warm machine is ready at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=devcluster/versions.sh
. "$here/versions.sh"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
cache_root=${DEVCLUSTER_CACHE:-$HOME/.cache/migrate-safe/devcluster}
modules=(k8s etcd tools)

log() { printf '[devcluster/build] %s\n' "$*" >&2; }

cache_key() {
  local sums
  # build.sh itself is hashed too: its flags (ldflags, tags) shape the binaries.
  sums=$(cd "$here/gomod" && cat k8s/go.mod k8s/go.sum etcd/go.mod etcd/go.sum \
    tools/go.mod tools/go.sum pause/go.mod pause/main.go "$here/build.sh" | sha256sum | cut -c1-12)
  printf 'k8s-%s_etcd-%s_helm-%s_kubeconform-%s_%s_%s' "$K8S_VERSION" "$ETCD_VERSION" \
    "$HELM_VERSION" "$KUBECONFORM_VERSION" "$("$GO" env GOVERSION)" "$sums"
}

# step NAME CMD...: run one build step, report how long it took.
step() {
  local name=$1 t0=$SECONDS
  shift
  log "$name: $*"
  "$@" >&2
  log "$name: done in $((SECONDS - t0))s"
}

build_k8s() { # outdir
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  # The -X stamps only make /version and `kubectl version` tell the truth; they change no behaviour.
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  # One go build for the five mains: the shared packages are compiled once.
  (cd "$here/gomod/k8s" && CGO_ENABLED=0 "$GO" build -trimpath -tags grpcnotrace -ldflags "$ld" \
    -o "$1/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() { # outdir
  # -o names the binary: the default name for .../server/v3 would be "server".
  (cd "$here/gomod/etcd" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" \
    -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

build_tools() { # outdir
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld+=" -X main.version=$KUBECONFORM_VERSION"
  (cd "$here/gomod/tools" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$ld" -o "$1/" \
    helm.sh/helm/v3/cmd/helm github.com/yannh/kubeconform/cmd/kubeconform)
}

build_pause() { # outdir
  (cd "$here/gomod/pause" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$1/pause" .)
}

download() { # module
  # -mod=readonly: a build must never rewrite the committed go.mod/go.sum.
  (cd "$here/gomod/$1" && GOFLAGS=-mod=readonly "$GO" mod download)
}

main() {
  local key dest tmp t0=$SECONDS m
  key=$(cache_key)
  dest=$cache_root/$key
  if [ -x "$dest/bin/kube-apiserver" ] && [ -f "$dest/bin/.complete" ]; then
    echo "$dest/bin"
    return
  fi
  log "cache miss: building $key (Go module cache: $("$GO" env GOMODCACHE))"
  mkdir -p "$cache_root"
  # Build into a private directory and rename at the end, so an interrupted build never
  # leaves a half-filled cache entry and two concurrent builds cannot mix outputs.
  tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for m in "${modules[@]}"; do step "download $m modules" download "$m"; done
  export GOFLAGS=-mod=readonly
  step "build etcd" build_etcd "$tmp/bin"
  step "build helm+kubeconform" build_tools "$tmp/bin"
  step "build pause" build_pause "$tmp/bin"
  step "build kube-apiserver+kube-controller-manager+kube-scheduler+kubelet+kubectl" \
    build_k8s "$tmp/bin"
  touch "$tmp/bin/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
  log "built in $((SECONDS - t0))s: $(cd "$dest/bin" && du -sh -- * | tr '\t' ' ' | paste -sd, -)"
  echo "$dest/bin"
}

main "$@"
