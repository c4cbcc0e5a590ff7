#!/usr/bin/env bash
# Check the chart's PrometheusRule with Prometheus' own promtool (pinned, tools/gotool.sh):
# `promtool check rules` on its rendered groups, then `promtool test rules` with
# tests/promtool/alerts.test.yaml.
#
#   tests/promtool/run.sh [DEVCLUSTER_BIN]    (the directory holding helm; default: devcluster/build.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$("$root/devcluster/build.sh")}
promtool=$("$root/tools/gotool.sh" promtool)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The PrometheusRule as the chart renders it with its default thresholds; promtool reads the
# bare `groups:` of its spec.
"$bin/helm" template ms "$root/charts/migrate-safe" --set metrics.prometheusRule.enabled=true \
  --show-only templates/prometheusrule.yaml |
  "$root/.venv/bin/python" -c 'import sys, yaml; yaml.safe_dump({"groups": yaml.safe_load(sys.stdin)["spec"]["groups"]}, sys.stdout, sort_keys=False)' \
    >"$work/rules.yaml"
cp "$root/tests/promtool/alerts.test.yaml" "$work/"
cd "$work"
echo "promtool of $(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$root/tools/promtool/go.mod")"
"$promtool" check rules rules.yaml
"$promtool" test rules alerts.test.yaml
