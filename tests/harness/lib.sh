# shellcheck shell=bash disable=SC2034
# Shared definitions for build.sh, gen-go-mods.sh and paths.sh. Source only.

HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HARNESS_DIR/versions.env"

# Bump when the build recipe (flags, layout) changes: invalidates every stamp.
HARNESS_RECIPE=1

ALL_COMPONENTS=(kubernetes etcd vault sealed-secrets helm moto external-secrets kustomize)

CACHE_ROOT="${SEALSYNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sealsync}"

die() { echo "harness: $*" >&2; exit 1; }

component_version() {
  case "$1" in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    vault) echo "$VAULT_VERSION" ;;
    sealed-secrets) echo "$SEALED_SECRETS_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    moto) echo "$MOTO_VERSION" ;;
    external-secrets) echo "$EXTERNAL_SECRETS_VERSION" ;;
    kustomize) echo "$KUSTOMIZE_VERSION" ;;
    *) die "unknown component '$1' (known: ${ALL_COMPONENTS[*]})" ;;
  esac
}

helm_module() { echo "helm.sh/helm/${HELM_VERSION%%.*}"; }

# Upstream Go module of a component.
component_module() {
  case "$1" in
    kubernetes) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    vault) echo github.com/hashicorp/vault ;;
    sealed-secrets) echo github.com/bitnami-labs/sealed-secrets ;;
    helm) helm_module ;;
    external-secrets) echo github.com/external-secrets/external-secrets ;;
    kustomize) echo sigs.k8s.io/kustomize/kustomize/v5 ;;
    *) die "component '$1' is not a Go module" ;;
  esac
}

# A component built inside a copy of its own downloaded module (its go.mod and
# go.sum, `-mod=readonly`) instead of a wrapper module: external-secrets' go.mod
# has a replace directive, so it cannot be required by another module unchanged.
# Pinned by go/<component>/module.sum (the module's checksum-database line), with
# the Go files of go/<component>/overlay/ laid over the module by `go build -overlay`.
builds_in_module() { [[ "$1" == external-secrets ]]; }

# Lines "<binary> <package> [<build tag>]" for each Go binary of a component. A line with
# a build tag is a compiled test (`go test -c -tags <tag>`): the package's tests are the
# program, e.g. upstream's own integration suite.
component_binaries() {
  case "$1" in
    kubernetes)
      echo "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
      echo "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager" ;;
    etcd) echo "etcd go.etcd.io/etcd/server/v3" ;;
    vault) echo "vault github.com/hashicorp/vault" ;;
    sealed-secrets)
      echo "kubeseal github.com/bitnami-labs/sealed-secrets/cmd/kubeseal"
      echo "controller github.com/bitnami-labs/sealed-secrets/cmd/controller"
      echo "sealed-secrets-integration github.com/bitnami-labs/sealed-secrets/integration integration" ;;
    helm) echo "helm $(helm_module)/cmd/helm" ;;
    moto) echo "moto_server -" ;;
    external-secrets) echo "external-secrets github.com/external-secrets/external-secrets" ;;
    kustomize) echo "kustomize sigs.k8s.io/kustomize/kustomize/v5" ;;
    *) die "unknown component '$1'" ;;
  esac
}

# Build tags of a component's `go build`. Vault's `minimal` build leaves out the
# database, cloud and other plugins the tests never mount (about a third of the cold
# build), and its overlay (go/vault/overlay/) adds back the Kubernetes auth method.
component_build_tags() {
  case "$1" in
    vault) echo minimal ;;
  esac
}

# Extra files copied from the pinned module into the component dir, as paths
# "share/<path inside the module>".
component_files() {
  case "$1" in
    sealed-secrets) echo "share/helm/sealed-secrets" ;; # chart, incl. crds/
    external-secrets) echo "share/deploy/crds/bundle.yaml" ;; # every CRD, one file
  esac
}

component_dir() { echo "$CACHE_ROOT/$1-$(component_version "$1")"; }

# Env var name -> "<component> <binary>"
ENV_VARS=(
  "SEALSYNC_ETCD etcd etcd"
  "SEALSYNC_KUBE_APISERVER kubernetes kube-apiserver"
  "SEALSYNC_KUBE_CONTROLLER_MANAGER kubernetes kube-controller-manager"
  "SEALSYNC_VAULT vault vault"
  "SEALSYNC_KUBESEAL sealed-secrets kubeseal"
  "SEALSYNC_UPSTREAM_CONTROLLER sealed-secrets controller"
  "SEALSYNC_SEALED_SECRETS_INTEGRATION sealed-secrets sealed-secrets-integration"
  "SEALSYNC_HELM helm helm"
  "SEALSYNC_MOTO_SERVER moto moto_server"
  "SEALSYNC_EXTERNAL_SECRETS external-secrets external-secrets"
  "SEALSYNC_KUSTOMIZE kustomize kustomize"
)
# Env var name -> "<component> <path relative to the component dir>" (non-binaries)
ENV_FILES=(
  "SEALSYNC_SEALED_SECRETS_CRD sealed-secrets share/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
  "SEALSYNC_SEALED_SECRETS_CHART sealed-secrets share/helm/sealed-secrets"
  "SEALSYNC_EXTERNAL_SECRETS_CRDS external-secrets share/deploy/crds/bundle.yaml"
)
