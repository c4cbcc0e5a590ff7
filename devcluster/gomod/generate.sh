#!/usr/bin/env bash
# Regenerate the three wrapper modules (k8s, etcd, tools) from the Go module proxy.
# Run only when bumping a version; build.sh uses the committed go.mod/go.sum as they are.
# The k8s wrapper needs a `replace` for every staging module that k8s.io/kubernetes requires at
# the placeholder v0.0.0 (its own replace lines are ignored for a dependency); the list is read
# from the proxy's go.mod of the pinned version, so it always matches that version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=devcluster/versions.sh
. "$here/../versions.sh"
export GOFLAGS=-mod=mod

init_module() { # dir module-path
  rm -f "$1/go.mod" "$1/go.sum"
  mkdir -p "$1"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1 && go mod edit -go=1.26)
}

gen_k8s() {
  local dir=$here/k8s staging gomod godebug m
  staging=v0.${K8S_VERSION#v1.}
  init_module "$dir" example.invalid/devcluster/k8s
  cd "$dir"
  gomod=$(go list -m -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
    go mod edit "-replace=$m=$m@$staging"
  done
  # Keep upstream's run-time GODEBUG defaults: a dependency's godebug line is ignored.
  godebug=$(awk '$1 == "godebug" {print $2}' "$gomod")
  [ -n "$godebug" ] && go mod edit "-godebug=$godebug"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubelet@$K8S_VERSION"
  go mod tidy
}

gen_etcd() {
  # Own module: etcd's grpc/otel requirements must not move the apiserver's (MVS).
  init_module "$here/etcd" example.invalid/devcluster/etcd
  cd "$here/etcd"
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
}

gen_tools() {
  # helm's k8s.io/* must not be forced to the control plane's versions by the k8s replaces.
  init_module "$here/tools" example.invalid/devcluster/tools
  cd "$here/tools"
  go get -tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  go mod tidy
}

for which in "${@:-k8s etcd tools}"; do
  for w in $which; do "gen_$w"; done
done
