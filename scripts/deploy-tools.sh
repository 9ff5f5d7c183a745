# Tools for deploy/: Helm, built from source with the Go toolchain, since the Go module proxy is
# the one place it can be fetched from here, and the Go modules of the chart's checker. Sourced by
# ./dev (setup) and by deploy/helm/check.sh; $ARTIFACTS is where downloads live (scripts/services.sh
# defines it the same way).
# shellcheck shell=bash

: "${ARTIFACTS:=${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer}"
# shellcheck source=scripts/go-toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-toolchain.sh"

HELM_VERSION=v3.22.0
HELM_HOME="$ARTIFACTS/helm-$HELM_VERSION"
HELM="$HELM_HOME/bin/helm"
# The Kubernetes version Helm 3.22's client modules (k8s.io/client-go v0.37) stand for.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37
HELM_CHECKER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/deploy/helm/check"

# Installs $HELM, and puts the checker's modules into Go's module cache so that the chart check
# (a unit test) needs no network. Idempotent; silent when both are there.
helm_install() {
  go_install || return 1
  if [[ ! -f "$HELM_HOME/.complete" || ! -x "$HELM" ]]; then
    helm_build
  fi
  # No output, and no network, when the modules are cached.
  (cd "$HELM_CHECKER_DIR" && GOFLAGS=-mod=readonly go mod download)
}

# The ldflags are those of Helm's release build (its Makefile): without them `helm version` says
# v3.22 and `helm template` assumes Kubernetes 1.20, which a chart's kubeVersion refuses.
helm_build() {
  go_install || return 1
  printf '\033[1m==> %s\033[0m\n' "building helm $HELM_VERSION from the Go module proxy into $HELM_HOME (minutes)" >&2
  rm -rf "$HELM_HOME"
  mkdir -p "$HELM_HOME/bin"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$HELM_K8S_MAJOR"
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  # A GOFLAGS of the caller's (e.g. -mod=vendor) has no meaning for a module outside any workspace.
  GOBIN="$HELM_HOME/bin" CGO_ENABLED=0 GOFLAGS='' go install -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$HELM_HOME/.complete"
}
