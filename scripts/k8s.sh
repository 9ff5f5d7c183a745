# ./dev k8s: a single-node Kubernetes on this machine, from upstream components only. Sourced by
# ./dev (log, die, ROOT, ARTIFACTS, go_install come from there).
#
#   ./dev k8s build   build the Kubernetes programs and etcd into $K8S_BIN once, and print
#                     their versions (up, down and status come next; see issue 21)
#
# kind, minikube and k3s cannot be had here; the Kubernetes release's own programs can: they are
# built from its Go modules on the Go module proxy (scripts/k8s/build/go.mod pins
# k8s.io/kubernetes and its staging modules to one release, and etcd's server to the version that
# release requires), with containerd, runc and the CNI plugins from Debian.
# shellcheck shell=bash

K8S_VERSION=v1.34.4
K8S_HOME="$ARTIFACTS/k8s-$K8S_VERSION"
K8S_BIN="$K8S_HOME/bin"
K8S_BUILD_MODULE="$ROOT/scripts/k8s/build"
K8S_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# The version stamps of Kubernetes' release build (hack/lib/version.sh): without them the
# servers report v0.0.0, and clients and charts that check the server's version refuse it.
k8s_ldflags() {
  local major=${K8S_VERSION#v}
  local minor=${major#*.}
  major=${major%%.*}
  minor=${minor%%.*}
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Builds the programs into $K8S_BIN once (about 15 minutes on 2 cores); silent when they are there.
k8s_install() {
  [[ -f "$K8S_HOME/.complete" ]] && return 0
  go_install || die "no Go toolchain for the Kubernetes build"
  log "building Kubernetes $K8S_VERSION and etcd from the Go module proxy into $K8S_BIN (about 15 minutes)"
  rm -rf "$K8S_HOME"
  mkdir -p "$K8S_BIN"
  local -a packages=()
  local program
  for program in "${K8S_PROGRAMS[@]}"; do packages+=("k8s.io/kubernetes/cmd/$program"); done
  # The kubelet and kube-proxy call into the host (mounts, iptables) through Go's own syscalls;
  # the release builds them without cgo as well.
  (cd "$K8S_BUILD_MODULE" &&
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags="$(k8s_ldflags)" -o "$K8S_BIN/" "${packages[@]}" &&
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags="-s -w" -o "$K8S_BIN/etcd" go.etcd.io/etcd/server/v3) ||
    die "building Kubernetes $K8S_VERSION failed"
  touch "$K8S_HOME/.complete"
}

cmd_k8s() {
  case "${1:-}" in
    build)
      k8s_install
      local program
      for program in "${K8S_PROGRAMS[@]}"; do
        [[ $program == kubectl ]] && continue
        printf '%-24s %s\n' "$program" "$("$K8S_BIN/$program" --version)"
      done
      printf '%-24s %s\n' kubectl "$("$K8S_BIN/kubectl" version --client | head -n 1)"
      printf '%-24s %s\n' etcd "$("$K8S_BIN/etcd" --version | head -n 1)"
      ;;
    *) die "usage: ./dev k8s build" ;;
  esac
}
