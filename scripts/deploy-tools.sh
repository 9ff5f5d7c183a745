# Tools for deploy/: Helm and Prometheus's promtool, built from source with the Go toolchain,
# since the Go module proxy is the one place they can be fetched from here, and the Go modules of
# the chart's checker. Sourced by
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
# promtool checks and unit-tests the chart's alerting rules. Prometheus's Go module versions are
# v0.3MM.P for release 3.MM.P (the module's VERSION file); this is Prometheus 3.16.0.
PROMTOOL_VERSION=v0.316.0
PROMTOOL_RELEASE=3.16.0
PROMTOOL_HOME="$ARTIFACTS/promtool-$PROMTOOL_VERSION"
PROMTOOL="$PROMTOOL_HOME/bin/promtool"
HELM_CHECKER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/deploy/helm/check"

# Installs $HELM, puts the checker's modules into Go's module cache so that the chart check
# (a unit test) needs no network, and compiles them into Go's build cache: KEDA's API package
# brings controller-runtime and client-go, minutes of a cold build on 2 cores that would
# otherwise fall within the check's time limit. Idempotent; silent when all are there.
helm_install() {
  go_install || return 1
  if [[ ! -f "$HELM_HOME/.complete" || ! -x "$HELM" ]]; then
    helm_build
  fi
  # No output, and no network, when the modules are cached; vet compiles what check.sh builds.
  (cd "$HELM_CHECKER_DIR" && GOFLAGS=-mod=readonly go mod download && GOFLAGS=-mod=readonly go vet ./...)
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

# Installs $PROMTOOL. Idempotent; silent when it is there. The real promtool, not a reimplementation
# of its checks: `check rules` and `test rules` are what a Prometheus of that release accepts.
promtool_install() {
  go_install || return 1
  [[ -f "$PROMTOOL_HOME/.complete" && -x "$PROMTOOL" ]] && return 0
  printf '\033[1m==> %s\033[0m\n' "building promtool $PROMTOOL_RELEASE ($PROMTOOL_VERSION) from the Go module proxy into $PROMTOOL_HOME (minutes)" >&2
  rm -rf "$PROMTOOL_HOME"
  mkdir -p "$PROMTOOL_HOME/bin"
  # The version stamps of Prometheus's release build (.promu.yml), so that `promtool --version`
  # says which release it is.
  local ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMTOOL_RELEASE"
  ldflags+=" -X github.com/prometheus/common/version.Branch=$PROMTOOL_VERSION"
  # As for helm: the caller's GOFLAGS mean nothing outside a module.
  GOBIN="$PROMTOOL_HOME/bin" CGO_ENABLED=0 GOFLAGS='' \
    go install -ldflags="$ldflags" "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" || return 1
  touch "$PROMTOOL_HOME/.complete"
}
