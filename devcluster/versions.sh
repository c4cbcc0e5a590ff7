# Pinned versions of the devcluster binaries (sourced by build.sh and gomod/generate.sh).
# Changing one means: run gomod/generate.sh, then commit the regenerated go.mod/go.sum.
K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
