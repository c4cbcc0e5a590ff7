#!/usr/bin/env bash
# Build (or reuse) one pinned Go tool and print the path of its binary.
#
#   tools/gotool.sh promtool   -> .../promtool  (progress goes to stderr)
#   tools/gotool.sh kstatus    -> .../kstatus
#
# Each tool is a wrapper module under tools/<name>/ whose go.mod pins the upstream release
# (promtool: github.com/prometheus/prometheus; kstatus: sigs.k8s.io/cli-utils). The binary is
# cached outside the checkout, in ${MIGRATE_SAFE_TOOLS_CACHE:-~/.cache/migrate-safe/tools}/<key>/,
# where <key> names the tool, its pinned upstream version, the Go version and a hash of the
# wrapper module and of this script. A cache hit runs no go command except `go env GOVERSION`.
# A cold promtool build downloads and compiles Prometheus: start it in the background.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
cache_root=${MIGRATE_SAFE_TOOLS_CACHE:-$HOME/.cache/migrate-safe/tools}

log() { printf '[tools/gotool] %s\n' "$*" >&2; }

# The upstream module each wrapper pins, and the package to build from it.
declare -A upstream=(
  [promtool]=github.com/prometheus/prometheus
  [kstatus]=sigs.k8s.io/cli-utils
)
declare -A package=(
  [promtool]=github.com/prometheus/prometheus/cmd/promtool
  [kstatus]=.
)

pinned_version() { # name
  awk -v m="${upstream[$1]}" '$1 == m { print $2; exit }' "$here/$1/go.mod"
}

cache_key() { # name
  local sums
  sums=$(cd "$here/$1" && cat go.mod go.sum ./*.go "$here/gotool.sh" 2>/dev/null | sha256sum | cut -c1-12)
  printf '%s-%s_%s_%s' "$1" "$(pinned_version "$1")" "$("$GO" env GOVERSION)" "$sums"
}

main() {
  local name=${1:?usage: tools/gotool.sh promtool|kstatus} key dest tmp t0=$SECONDS
  [ -n "${upstream[$name]:-}" ] || { log "unknown tool '$name': use promtool or kstatus"; exit 2; }
  key=$(cache_key "$name")
  dest=$cache_root/$key
  if [ -x "$dest/$name" ]; then
    echo "$dest/$name"
    return
  fi
  log "cache miss: building $key (Go module cache: $("$GO" env GOMODCACHE))"
  mkdir -p "$cache_root"
  # Build into a private directory and rename at the end: an interrupted build never leaves a
  # half-filled cache entry, and two concurrent builds cannot mix outputs.
  tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # -mod=readonly: a build must never rewrite the committed go.mod/go.sum.
  (cd "$here/$name" && GOFLAGS=-mod=readonly "$GO" mod download >&2)
  log "downloaded modules in $((SECONDS - t0))s"
  (cd "$here/$name" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$GO" build -trimpath \
    -ldflags "-s -w" -o "$tmp/$name" "${package[$name]}" >&2)
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
  log "built $name in $((SECONDS - t0))s: $(du -sh "$dest/$name" | cut -f1)"
  echo "$dest/$name"
}

main "$@"
