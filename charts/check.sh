#!/usr/bin/env bash
# Static checks of the Helm chart: helm lint --strict, then every rendering of the chart that a
# user can choose (cluster/namespaced RBAC, peering, monitoring on) through kubeconform -strict.
#
#   charts/check.sh BIN_DIR       BIN_DIR holds helm and kubeconform (devcluster/build.sh prints it)
#
# Schemas, all local (no network): Kubernetes' from the kubernetes-validate package in .venv (tools/k8s_schemas.py),
# the CRDs' (crds/*.yaml and the chart's crds/) converted by tools/crd_schema.py, and Flux's and
# Argo CD's from their own CRDs at pinned releases (tools/gitops_schemas.py: Go module proxy the
# first time, then a cache outside the checkout).
# ServiceMonitor and PrometheusRule (Prometheus Operator CRDs) are skipped: their content is
# checked by tests/unit/packaging (metric names, runbook links).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: charts/check.sh BIN_DIR}
py=${PYTHON:-.venv/bin/python}
chart=charts/migrate-safe
kube_version=${KUBE_VERSION:-1.35.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

k8s_schemas=$("$py" tools/k8s_schemas.py "$work/k8s-schemas" "$kube_version")
# kopf's peering CRDs (the chart's crds/) too: the peering rendering creates their objects.
"$py" tools/crd_schema.py "$work/crd-schemas" crds/*.yaml "$chart"/crds/*.yaml >/dev/null
gitops_schemas=$("$py" -m tools.gitops_schemas)
# The whole Flux and Argo CD objects that the docs show, one file per YAML block.
"$py" tools/doc_objects.py "$work/doc-objects" "$(ls "$gitops_schemas" | paste -sd,)" \
  $(find docs examples README.md -name "*.md") >/dev/null

"$bin/helm" lint --strict "$chart"
"$bin/helm" lint --strict "$chart" --set rbac.scope=namespace --set 'watchNamespaces={apps,billing}'

render() { # name, helm flags...
  local name=$1
  shift
  "$bin/helm" template check "$chart" --namespace migrate-safe-system --kube-version "$kube_version" \
    "$@" >"$work/$name.yaml"
}
render default
render namespaced --set rbac.scope=namespace --set 'watchNamespaces={apps,billing}'
render peering --set operator.peering.enabled=true --set replicaCount=2
render monitoring --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true
render minimal --set crds.create=false --set grafanaDashboard.create=false \
  --set metrics.service.enabled=false --set serviceAccount.create=false --set serviceAccount.name=op

"$bin/kubeconform" -strict -summary -kubernetes-version "$kube_version" \
  -schema-location "$k8s_schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  -schema-location "$work/crd-schemas/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
  -skip ServiceMonitor,PrometheusRule \
  "$work"/*.yaml

# The examples users copy must be valid too: DatabaseMigrations, sets, Deployments, and the Argo CD
# and Flux objects (Application, Kustomization, GitRepository) of examples/ and docs/, checked
# against the schemas of the group they name; a kind with no schema anywhere fails. kustomize's
# own kustomization.yaml files are not Kubernetes objects.
"$bin/kubeconform" -strict -summary -kubernetes-version "$kube_version" \
  -schema-location "$gitops_schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
  -schema-location "$k8s_schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  -schema-location "$work/crd-schemas/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
  -ignore-filename-pattern 'kustomization[.]yaml$' \
  examples/gitops examples/app-gating examples/fleets "$work/doc-objects"
