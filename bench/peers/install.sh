#!/usr/bin/env bash
# Installs the peer migration tools the benchmarks compare with, each from its own registry at
# the version pinned in versions.env, into a cache outside the checkout:
#   ${MIGRATE_SAFE_PEERS_CACHE:-~/.cache/migrate-safe/peers}/<name>-<version>/
# A directory with a .installed marker is complete, so a warm machine skips the work. A tool
# that cannot be installed is reported and skipped (the benchmarks then leave it out with a
# note); the script still exits 0 unless asked for --strict.
#
#   bench/peers/install.sh            # everything
#   bench/peers/install.sh dbmate yoyo  # only these
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${MIGRATE_SAFE_PEERS_CACHE:-$HOME/.cache/migrate-safe/peers}"
STRICT=0
WANTED=()
for arg in "$@"; do
  if [[ $arg == --strict ]]; then STRICT=1; else WANTED+=("$arg"); fi
done
FAILED=()

wanted() {
  [[ ${#WANTED[@]} -eq 0 ]] && return 0
  local name
  for name in "${WANTED[@]}"; do [[ $name == "$1" ]] && return 0; done
  return 1
}

# install NAME VERSION FUNCTION [STAMP]: runs FUNCTION DIR into a fresh DIR unless DIR is
# complete. STAMP (a hash of files of ours the build uses) rebuilds when those files change.
install() {
  local name=$1 version=$2 step=$3 stamp=${4:-pinned} dir="$CACHE/$1-$2"
  wanted "$name" || return 0
  if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$stamp" ]]; then
    echo "ok    $name $version (cached in $dir)"
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  local log="$dir/install.log"
  local started=$SECONDS
  if "$step" "$dir" >"$log" 2>&1; then
    echo "$stamp" >"$dir/.installed"
    echo "new   $name $version ($((SECONDS - started)) s, $dir)"
  else
    echo "SKIP  $name $version: install failed, see $log:" >&2
    tail -5 "$log" | sed 's/^/      /' >&2
    FAILED+=("$name")
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# Go tools: `go install` from the module proxy; goose leaves out the drivers we do not use.
golang_migrate() {
  have go || { echo "go not found"; return 1; }
  GOBIN="$1/bin" go install -tags postgres \
    "github.com/golang-migrate/migrate/v4/cmd/migrate@v$GOLANG_MIGRATE_VERSION"
}
goose() {
  have go || { echo "go not found"; return 1; }
  GOBIN="$1/bin" go install \
    -tags 'no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb no_starrocks' \
    "github.com/pressly/goose/v3/cmd/goose@v$GOOSE_VERSION"
}

# dbmate's npm package ships the native Linux binary as an optional dependency.
dbmate() {
  have npm || { echo "npm not found"; return 1; }
  npm install --prefix "$1" --no-audit --no-fund "dbmate@$DBMATE_VERSION"
  "$1/node_modules/.bin/dbmate" --version
}

# Flyway through its Java API (bench/peers/flyway), dependencies copied next to the jar.
flyway() {
  have mvn && have java || { echo "mvn or java not found"; return 1; }
  mvn -q -B -f "$HERE/flyway/pom.xml" -DoutputDir="$1/build" \
    -Dflyway.version="$FLYWAY_VERSION" -Dpgjdbc.version="$PGJDBC_VERSION" \
    package dependency:copy-dependencies -DoutputDirectory="$1/lib"
  cp "$1/build/flyway-bench-1.jar" "$1/lib/"
}

# Python tools, each in its own venv so their pins never meet the project's.
python_venv() {
  local dir=$1; shift
  python3 -m venv "$dir/venv" && "$dir/venv/bin/pip" install -q "$@"
}
yoyo() { python_venv "$1" "yoyo-migrations==$YOYO_VERSION" "psycopg[binary]==$PSYCOPG_VERSION"; }
alembic() { python_venv "$1" "alembic==$ALEMBIC_VERSION" "psycopg[binary]==$PSYCOPG_VERSION"; }

# Bench-only Python libraries for the project's interpreter, kept out of .venv: the benchmarks
# put these directories on sys.path when they need them (plots, profiles).
pip_target() { "$(dirname "$HERE")/../.venv/bin/pip" install -q --target "$1/lib" "$2"; }
pyinstrument() { pip_target "$1" "pyinstrument==$PYINSTRUMENT_VERSION"; }
matplotlib() { pip_target "$1" "matplotlib==$MATPLOTLIB_VERSION"; }

install golang-migrate "$GOLANG_MIGRATE_VERSION" golang_migrate
install goose "$GOOSE_VERSION" goose
install dbmate "$DBMATE_VERSION" dbmate
install flyway "$FLYWAY_VERSION" flyway \
  "$(cat "$HERE/flyway/pom.xml" "$HERE/flyway/src/main/java/FlywayBench.java" | sha256sum | cut -c1-16)"
install yoyo "$YOYO_VERSION" yoyo
install alembic "$ALEMBIC_VERSION" alembic
install pyinstrument "$PYINSTRUMENT_VERSION" pyinstrument
install matplotlib "$MATPLOTLIB_VERSION" matplotlib

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "not installed: ${FAILED[*]} (the benchmarks leave them out with a note)" >&2
  [[ $STRICT == 1 ]] && exit 1
fi
exit 0
