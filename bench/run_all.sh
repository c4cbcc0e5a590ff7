#!/usr/bin/env bash
# Every benchmark of issue 8 (sections 1-3) with one command: installs the pinned peers into
# the cache first (a warm machine skips that), then runs each benchmark; each prints Markdown
# tables and writes its PNG into docs/benchmarks/. Output is also saved to bench/results/.
#
#   bench/run_all.sh            # the full runs (about an hour on 2 cores)
#   bench/run_all.sh --smoke    # the small versions (about a minute), no peers needed
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SMOKE=()
[[ ${1:-} == --smoke ]] && SMOKE=(--smoke)
mkdir -p bench/results
OUT="bench/results/run_all-$(date -u +%Y%m%dT%H%M%SZ).md"
[[ ${#SMOKE[@]} -gt 0 ]] && OUT=/dev/null  # smoke numbers prove nothing: not kept

{
  if [[ ${#SMOKE[@]} -eq 0 ]]; then
    echo "== installing peers" >&2
    bench/peers/install.sh >&2
  fi
  echo "== 1. zero-downtime under load" >&2
  $PY bench/zero_downtime.py "${SMOKE[@]}"
  echo
  echo "== 2. apply throughput" >&2
  if [[ ${#SMOKE[@]} -eq 0 ]]; then
    $PY bench/throughput.py --profile
  else
    $PY bench/throughput.py --smoke
  fi
  echo
  echo "== 3. fingerprint and postflight at scale" >&2
  $PY bench/fingerprint_bench.py "${SMOKE[@]}"
} | tee "$OUT"
echo "saved: $OUT" >&2
