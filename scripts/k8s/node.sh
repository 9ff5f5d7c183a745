# The node of ./dev k8s: containerd (its CRI plugin) with runc and the CNI plugins from Debian,
# the kubelet, kube-proxy, and CoreDNS as a pod. Sourced by scripts/k8s.sh, whose variables and
# helpers it uses.
#
# Everything the node makes lives in the cluster's network namespace or under $K8S_STATE and
# $K8S_RUN: the bridge cni0 and the pods' veths, containerd's images and state, the kubelet's
# volumes and pod logs. `down` removes the pods through the kubelet first, then anything left
# (tasks, mounts, the pods' network namespaces), so nothing stays on the host. containerd keeps
# its images across `down`, so that a warm `up` imports nothing.
# shellcheck shell=bash

APT_K8S_NODE_PACKAGES=(containerd runc containernetworking-plugins iptables buildah)
K8S_NODE_NAME=iotinfer-node
K8S_DNS_IP=10.96.0.10      # the kube-dns Service, as kubeadm places it
K8S_POD_SUBNET=10.244.0.0/24 # the share of K8S_POD_CIDR that the controller-manager gives the only node
# Run-time state: sockets (a unix socket's path is limited to 108 bytes), runc's state, IPAM.
K8S_RUN=/run/iotinfer-k8s
K8S_CONTAINERD_SOCK=$K8S_RUN/containerd.sock
K8S_PAUSE_IMAGE=localhost/iotinfer-pause:1.0
K8S_COREDNS_VERSION=v1.12.1 # what kubeadm installs with Kubernetes v1.34
K8S_COREDNS_IMAGE=localhost/iotinfer-coredns:$K8S_COREDNS_VERSION
# The kernel settings the kubelet changes to its liking at start (vm.overcommit_memory=1,
# kernel.panic=10, kernel.panic_on_oops=1, ...): `up` saves them and `down` puts them back.
K8S_KERNEL_TUNABLES=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

k8s_ctr() { ctr --address "$K8S_CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# containerd's configuration: its own root, state and socket, so that it stays apart from any
# containerd of the host's.
k8s_containerd_config() {
  cat <<EOF
version = 2
root = "$K8S_STATE/containerd"
state = "$K8S_RUN/containerd"
[grpc]
  address = "$K8S_CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$K8S_STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Nothing can be pulled here: the sandbox image is built and imported by ./dev k8s up.
  sandbox_image = "$K8S_PAUSE_IMAGE"
  # This machine's root lacks CAP_SYS_RESOURCE, so runc cannot lower a process's oom_score_adj:
  # without this every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 here, and no systemd to delegate to.
        SystemdCgroup = false
        Root = "$K8S_RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_STATE/cni"
EOF
}

# The pods' network: a bridge in the cluster's namespace, addresses from the node's pod subnet.
# Pods reach the node's address (where ./dev services listen for them) directly, so nothing is
# masqueraded; hairpin mode lets a pod reach itself through a Service.
k8s_cni_config() {
  cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "iotinfer",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$K8S_POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$K8S_RUN/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

k8s_kubelet_config() {
  cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $K8S_PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $K8S_PKI/kubelet-server.crt
tlsPrivateKeyFile: $K8S_PKI/kubelet-server.key
# This machine has cgroup v1, which Kubernetes v1.34 refuses unless told, and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$K8S_CONTAINERD_SOCK
clusterDomain: cluster.local
clusterDNS: [$K8S_DNS_IP]
# The host's resolver is not reachable from the cluster's namespace.
resolvConf: ""
podLogsDir: $K8S_STATE/pod-logs
failSwapOn: false
# A development node shares its disk and memory with everything else: evict only when nearly
# out, rather than at the defaults' 10-15 % free.
evictionHard: {memory.available: 256Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
EOF
}

k8s_proxy_config() {
  cat <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $K8S_STATE/kube-proxy.conf}
mode: iptables
clusterCIDR: $K8S_POD_CIDR
hostnameOverride: $K8S_NODE_NAME
# NodePorts on the node's address only, not on every address of the namespace (cni0's too).
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# The conntrack table's size is the host's, not the namespace's: leave it alone.
conntrack: {maxPerCore: 0, min: 0}
EOF
}

# The node's certificates, beside the control plane's: the kubelet's client (a member of
# system:nodes) and serving ones, kube-proxy's, and the API server's client for the kubelets.
k8s_node_pki() {
  k8s_cert kubelet "/O=system:nodes/CN=system:node:$K8S_NODE_NAME"
  k8s_cert kubelet-server "/CN=$K8S_NODE_NAME" "IP:$K8S_NODE_IP,DNS:$K8S_NODE_NAME"
  k8s_cert kube-proxy /CN=system:kube-proxy
  k8s_cert kube-apiserver-kubelet-client /CN=kube-apiserver-kubelet-client
  local client
  for client in kubelet kube-proxy; do k8s_kubeconfig "$client"; done
}

# Stdin into file $1 when it differs from what is there, stopping component $2 (if it runs) so
# that `up` starts it again with the change. Never rewritten unchanged: kube-proxy exits when its
# file is written at all.
k8s_config_file() {
  local file=$1 component=$2 new
  new=$(cat)
  [[ -f $file && $(<"$file") == "$new" ]] && return 0
  if [[ -n $component ]] && live_pid "$K8S_STATE/$component.pid" >/dev/null; then
    log "the configuration of $component changed; restarting it"
    stop_pidfile "$K8S_STATE/$component.pid" "$component"
  fi
  printf '%s\n' "$new" >"$file"
}

# Writes the node's configuration files; run at every `up`, so that a change here applies.
k8s_node_files() {
  mkdir -p "$K8S_STATE/cni" "$K8S_STATE/pod-logs" "$K8S_STATE/kubelet" "$K8S_RUN"
  k8s_containerd_config | k8s_config_file "$K8S_STATE/containerd.toml" containerd
  # containerd's CRI reads its CNI directory when it changes.
  k8s_cni_config | k8s_config_file "$K8S_STATE/cni/10-iotinfer.conflist" ""
  k8s_kubelet_config | k8s_config_file "$K8S_STATE/kubelet.yaml" kubelet
  k8s_proxy_config | k8s_config_file "$K8S_STATE/kube-proxy.yaml" kube-proxy
}

k8s_save_kernel_tunables() {
  [[ -f "$K8S_STATE/kernel-tunables" ]] && return 0
  local key
  for key in "${K8S_KERNEL_TUNABLES[@]}"; do
    [[ -f /proc/sys/$key ]] && printf '%s %s\n' "$key" "$(<"/proc/sys/$key")"
  done >"$K8S_STATE/kernel-tunables"
}

k8s_restore_kernel_tunables() {
  [[ -f "$K8S_STATE/kernel-tunables" ]] || return 0
  local key value
  while read -r key value; do
    [[ $(<"/proc/sys/$key") == "$value" ]] || echo "$value" >"/proc/sys/$key"
  done <"$K8S_STATE/kernel-tunables"
  rm -f "$K8S_STATE/kernel-tunables"
}

# Builds the Go program in module $1 (a directory) into $2, static.
k8s_go_build() {
  (cd "$1" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags="-s -w" -o "$2" "${@:3}")
}

# An image from scratch holding only the static program $2 as its entrypoint, running as $3, as
# an OCI archive at $4; named $1.
k8s_program_image() {
  local name=$1 program=$2 user=$3 archive=$4 container
  container=$(buildah from scratch)
  buildah copy --quiet "$container" "$program" "/$(basename "$program")" >/dev/null
  buildah config --entrypoint "[\"/$(basename "$program")\"]" --user "$user" "$container"
  buildah commit --quiet --rm "$container" "$name" >/dev/null
  mkdir -p "$(dirname "$archive")"
  buildah push --quiet "$name" "oci-archive:$archive:$name" >/dev/null
}

# The node's own images, built once into $K8S_HOME/images: the sandbox's pause and CoreDNS.
k8s_node_images() {
  local dir="$K8S_HOME/images"
  [[ -f "$dir/pause.tar" && -f "$dir/coredns.tar" ]] && return 0
  go_install || die "no Go toolchain for the node's images"
  local work
  work=$(mktemp -d)
  log "building the pause and CoreDNS $K8S_COREDNS_VERSION images (CoreDNS from its Go module; minutes)"
  k8s_go_build "$ROOT/scripts/k8s/pause" "$work/pause" . || die "building pause failed"
  k8s_go_build "$ROOT/scripts/k8s/coredns" "$work/coredns" github.com/coredns/coredns || die "building CoreDNS failed"
  # 65535 is the pause image's user upstream; 65532 is distroless' nonroot, as CoreDNS's.
  k8s_program_image "$K8S_PAUSE_IMAGE" "$work/pause" 65535:65535 "$dir/pause.tar"
  k8s_program_image "$K8S_COREDNS_IMAGE" "$work/coredns" 65532:65532 "$dir/coredns.tar"
  rm -rf "$work"
}

# Imports OCI archive $1 into containerd unless the same file was imported already.
k8s_import() {
  local archive=$1 stamp
  stamp="$K8S_STATE/imported/$(basename "$archive").sha256"
  local sum
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  [[ -f $stamp && $(<"$stamp") == "$sum" ]] && return 0
  log "importing $archive into containerd"
  k8s_ctr images import "$archive" >/dev/null || die "ctr could not import $archive"
  mkdir -p "$(dirname "$stamp")"
  echo "$sum" >"$stamp"
}

# Each image ./dev image has built, and the node's own.
k8s_import_images() {
  local archive
  for archive in "$K8S_HOME/images"/*.tar "$IMAGE_DIR"/*.tar; do
    [[ -f $archive ]] || continue
    k8s_import "$archive"
  done
}

# Bindings the node needs from the API: the API server may call the kubelet (logs, exec).
k8s_node_rbac() {
  k8s_kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: iotinfer:kube-apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
EOF
}

k8s_node_ready() {
  [[ $(k8s_kubectl get node "$K8S_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

k8s_dns_up() {
  sed -e "s|@DNS_IP@|$K8S_DNS_IP|g" -e "s|@IMAGE@|$K8S_COREDNS_IMAGE|g" "$ROOT/scripts/k8s/coredns.yaml" |
    k8s_kubectl apply -f - >/dev/null || die "CoreDNS's manifest was refused"
  k8s_kubectl -n kube-system rollout status deployment/coredns --timeout="${SERVICE_START_TIMEOUT}s" >/dev/null ||
    die "CoreDNS did not become ready: ./dev k8s kubectl -n kube-system describe pods -l k8s-app=kube-dns"
  log "CoreDNS is ready at $K8S_DNS_IP"
}

# Removes the pods through the kubelet (their volumes, network namespaces and addresses go with
# them), with the controllers stopped so that none is made again.
k8s_drain_pods() {
  live_pid "$K8S_STATE/kubelet.pid" >/dev/null && k8s_healthy kube-apiserver || return 0
  k8s_kubectl delete pods --all --all-namespaces --grace-period=5 --timeout=90s >/dev/null 2>&1 ||
    log "some pods did not go in 90s; removing what is left directly"
}

# What the kubelet could not remove: containers still running, the pods' network namespaces
# (bind mounts under /run/netns that containerd's CRI names in each sandbox's spec), and mounts
# under the node's directories.
k8s_node_leftovers() {
  local -a namespaces=()
  if [[ -S $K8S_CONTAINERD_SOCK ]] && live_pid "$K8S_STATE/containerd.pid" >/dev/null; then
    local task id
    for task in $(k8s_ctr tasks list --quiet 2>/dev/null); do
      k8s_ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1
      k8s_ctr tasks delete --force "$task" >/dev/null 2>&1
    done
    for id in $(k8s_ctr containers list --quiet 2>/dev/null); do
      mapfile -t -O "${#namespaces[@]}" namespaces < <(k8s_ctr containers info "$id" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path", "").startswith("/var/run/netns/"):
        print(ns["path"])')
      k8s_ctr containers delete "$id" >/dev/null 2>&1
    done
  fi
  local path
  for path in "${namespaces[@]}"; do
    [[ -e $path ]] && { umount "$path" 2>/dev/null; rm -f "$path"; }
  done
  # Deepest first.
  while read -r path; do
    umount -l "$path" 2>/dev/null
  done < <(awk -v state="$K8S_STATE/" -v run="$K8S_RUN/" \
    'index($5, state) == 1 || index($5, run) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# The cgroups the kubelet made for its pods (cgroupfs driver, cgroup v1).
k8s_node_cgroups() {
  local controller
  for controller in /sys/fs/cgroup/*/; do
    [[ -d "$controller/kubepods" ]] || continue
    find "$controller/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  done
}
