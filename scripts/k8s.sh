# ./dev k8s: a single-node Kubernetes on this machine, from upstream components only. Sourced by
# ./dev (log, die, ROOT, ARTIFACTS, go_install come from there).
#
#   ./dev k8s build          build the Kubernetes programs and etcd into $K8S_BIN once, and print
#                            their versions
#   ./dev k8s up|down|status a single-node cluster: the control plane (etcd, kube-apiserver,
#                            kube-controller-manager, kube-scheduler) and the node (containerd,
#                            the kubelet, kube-proxy, CoreDNS; see scripts/k8s/node.sh)
#   ./dev k8s kubectl ARGS   kubectl as the cluster's administrator
#   ./dev k8s helm ARGS      helm, likewise
#   ./dev k8s demo           the pipeline in pods: the images, the cluster, the chart with
#                            deploy/helm/examples/local-k8s.yaml, 20,000 images, then the
#                            per-device table and the charts (into ./iotinfer-k8s-demo)
#
# The cluster lives in a network namespace of its own, $K8S_NETNS: its servers bind the node's
# address on a bridge there (and 127.0.0.1 there), never the host's interfaces, and `down`
# deletes the namespace with everything in it. State (certificates, kubeconfigs, etcd's data,
# logs, pids) is in .cache/k8s/; `down` keeps the certificates and drops the data.
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
K8S_NETNS=iotinfer-k8s
K8S_NETNS_PATH=/run/netns/$K8S_NETNS # where `ip netns add` puts it
K8S_STATE="$ROOT/.cache/k8s"
K8S_PKI="$K8S_STATE/pki"
# The node's address, on the bridge k8s-node0 inside the namespace; the API server's too.
K8S_NODE_IP=10.200.0.2
K8S_NODE_PREFIX=24
K8S_API_PORT=6443
K8S_SERVICE_CIDR=10.96.0.0/24
K8S_SERVICE_IP=10.96.0.1 # the `kubernetes` Service, first of the range
K8S_POD_CIDR=10.244.0.0/16
# Started in this order, stopped in the reverse one (the node's pods first).
K8S_CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
K8S_NODE=(containerd kubelet kube-proxy)
# The pipeline's servers for the pods: ./dev services' own Kafka and Mongo-wire server, run in the
# cluster's namespace at the node's address, as a managed Kafka and database outside the cluster
# would be. Their data goes with `down`, as etcd's does.
K8S_SERVICES=(kafka mongo)

# shellcheck source=scripts/k8s/node.sh
source "$ROOT/scripts/k8s/node.sh"

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

# Builds the programs into $K8S_BIN once (about 20 minutes on 2 cores); silent when they are there.
k8s_install() {
  [[ -f "$K8S_HOME/.complete" ]] && return 0
  go_install || die "no Go toolchain for the Kubernetes build"
  log "building Kubernetes $K8S_VERSION and etcd from the Go module proxy into $K8S_BIN (about 20 minutes)"
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

# Runs "$@" inside the cluster's network namespace, and only that: `ip netns exec` would also
# give it a mount namespace of its own, and the kubelet's volume mounts must be the ones
# containerd sees.
k8s_in() { nsenter --net="$K8S_NETNS_PATH" "$@"; }

k8s_netns_up() {
  [[ -e $K8S_NETNS_PATH ]] && return 0
  ip netns add "$K8S_NETNS"
  ip -n "$K8S_NETNS" link set lo up
  # A bridge rather than a dummy link, which this machine's kernel lacks; its address is local
  # whether or not anything is attached.
  ip -n "$K8S_NETNS" link add k8s-node0 type bridge
  ip -n "$K8S_NETNS" addr add "$K8S_NODE_IP/$K8S_NODE_PREFIX" dev k8s-node0
  ip -n "$K8S_NETNS" link set k8s-node0 up
  # The namespace has no default route: without one to the Service range, the node itself (and
  # pods on its network) could not even send to a Service before kube-proxy's rules rewrite it.
  ip -n "$K8S_NETNS" route add "$K8S_SERVICE_CIDR" dev k8s-node0
}

# A key and a certificate signed by the cluster's CA: NAME, subject, and subjectAltName (or "").
k8s_cert() {
  local name=$1 subject=$2 san=${3:-}
  [[ -f "$K8S_PKI/$name.crt" ]] && return 0
  local -a ext=()
  if [[ -n $san ]]; then
    printf 'subjectAltName=%s\n' "$san" >"$K8S_PKI/$name.ext"
    ext=(-extfile "$K8S_PKI/$name.ext")
  fi
  openssl req -new -newkey rsa:2048 -nodes -keyout "$K8S_PKI/$name.key" -subj "$subject" \
    -out "$K8S_PKI/$name.csr" 2>/dev/null || die "openssl could not make the key of $name"
  openssl x509 -req -in "$K8S_PKI/$name.csr" -CA "$K8S_PKI/ca.crt" -CAkey "$K8S_PKI/ca.key" -CAcreateserial \
    -days 365 -out "$K8S_PKI/$name.crt" "${ext[@]}" 2>/dev/null || die "openssl could not sign the certificate of $name"
  rm -f "$K8S_PKI/$name.csr" "$K8S_PKI/$name.ext"
}

# A kubeconfig at $K8S_STATE/NAME.conf for the client certificate NAME.
k8s_kubeconfig() {
  local name=$1 file="$K8S_STATE/$1.conf"
  [[ -f $file ]] && return 0
  local kubectl=("$K8S_BIN/kubectl" --kubeconfig "$file")
  "${kubectl[@]}" config set-cluster iotinfer --server="https://$K8S_NODE_IP:$K8S_API_PORT" \
    --certificate-authority="$K8S_PKI/ca.crt" --embed-certs >/dev/null
  "${kubectl[@]}" config set-credentials "$name" --client-certificate="$K8S_PKI/$name.crt" \
    --client-key="$K8S_PKI/$name.key" --embed-certs >/dev/null
  "${kubectl[@]}" config set-context iotinfer --cluster=iotinfer --user="$name" >/dev/null
  "${kubectl[@]}" config use-context iotinfer >/dev/null
}

# The cluster's CA, the API server's serving certificate, the service-account signing key, and
# a client certificate and kubeconfig for each client; made once, kept across `down`.
k8s_pki() {
  mkdir -p "$K8S_PKI"
  chmod 700 "$K8S_PKI"
  if [[ ! -f "$K8S_PKI/ca.crt" ]]; then
    log "making the cluster's CA and certificates in $K8S_PKI (openssl)"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$K8S_PKI/ca.key" -out "$K8S_PKI/ca.crt" -days 3650 \
      -subj /CN=iotinfer-k8s-ca 2>/dev/null
  fi
  k8s_cert kube-apiserver /CN=kube-apiserver \
    "IP:$K8S_NODE_IP,IP:$K8S_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  [[ -f "$K8S_PKI/sa.key" ]] || openssl genrsa -out "$K8S_PKI/sa.key" 2048 2>/dev/null
  [[ -f "$K8S_PKI/sa.pub" ]] || openssl rsa -in "$K8S_PKI/sa.key" -pubout -out "$K8S_PKI/sa.pub" 2>/dev/null
  k8s_cert admin "/O=system:masters/CN=iotinfer-admin"
  k8s_cert kube-controller-manager /CN=system:kube-controller-manager
  k8s_cert kube-scheduler /CN=system:kube-scheduler
  local client
  for client in admin kube-controller-manager kube-scheduler; do k8s_kubeconfig "$client"; done
}

# The command line of control-plane component $1, into the array K8S_COMMAND.
k8s_command() {
  local pki=$K8S_PKI state=$K8S_STATE
  case "$1" in
    etcd)
      K8S_COMMAND=("$K8S_BIN/etcd" --name iotinfer --data-dir "$state/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster iotinfer=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381)
      ;;
    kube-apiserver)
      # shellcheck disable=SC2054 # Node,RBAC is one flag's value
      K8S_COMMAND=("$K8S_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
        --bind-address="$K8S_NODE_IP" --advertise-address="$K8S_NODE_IP" --secure-port="$K8S_API_PORT" \
        --tls-cert-file="$pki/kube-apiserver.crt" --tls-private-key-file="$pki/kube-apiserver.key" \
        --client-ca-file="$pki/ca.crt" --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range="$K8S_SERVICE_CIDR" --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction --allow-privileged=true \
        --kubelet-client-certificate="$pki/kube-apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/kube-apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP)
      ;;
    kube-controller-manager)
      K8S_COMMAND=("$K8S_BIN/kube-controller-manager" --kubeconfig="$state/kube-controller-manager.conf" \
        --authentication-kubeconfig="$state/kube-controller-manager.conf" \
        --authorization-kubeconfig="$state/kube-controller-manager.conf" \
        --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --allocate-node-cidrs --cluster-cidr="$K8S_POD_CIDR" --service-cluster-ip-range="$K8S_SERVICE_CIDR")
      ;;
    kube-scheduler)
      K8S_COMMAND=("$K8S_BIN/kube-scheduler" --kubeconfig="$state/kube-scheduler.conf" \
        --authentication-kubeconfig="$state/kube-scheduler.conf" \
        --authorization-kubeconfig="$state/kube-scheduler.conf" --bind-address=127.0.0.1 --leader-elect=false)
      ;;
    containerd)
      K8S_COMMAND=(containerd --config "$state/containerd.toml")
      ;;
    kubelet)
      K8S_COMMAND=("$K8S_BIN/kubelet" --config="$state/kubelet.yaml" --kubeconfig="$state/kubelet.conf" \
        --root-dir="$state/kubelet" --hostname-override="$K8S_NODE_NAME" --node-ip="$K8S_NODE_IP")
      ;;
    kube-proxy)
      K8S_COMMAND=("$K8S_BIN/kube-proxy" --config="$state/kube-proxy.yaml")
      ;;
  esac
}

# True when control-plane component $1 answers its health check.
k8s_healthy() {
  case "$1" in
    etcd) k8s_in curl -sf http://127.0.0.1:2381/health >/dev/null 2>&1 ;;
    kube-apiserver) k8s_kubectl get --raw /readyz >/dev/null 2>&1 ;;
    kube-controller-manager) k8s_in curl -skf https://127.0.0.1:10257/healthz >/dev/null 2>&1 ;;
    kube-scheduler) k8s_in curl -skf https://127.0.0.1:10259/healthz >/dev/null 2>&1 ;;
    containerd) k8s_ctr version >/dev/null 2>&1 ;;
    kubelet) k8s_in curl -sf http://127.0.0.1:10248/healthz >/dev/null 2>&1 ;;
    kube-proxy) k8s_in curl -sf http://127.0.0.1:10256/healthz >/dev/null 2>&1 ;;
  esac
}

# ./dev services "$1" for K8S_SERVICES, inside the cluster's namespace at the node's address.
k8s_services() {
  IOTINFER_SERVICES_HOST=$K8S_NODE_IP IOTINFER_KAFKA_BROKERS=1 IOTINFER_MONGO_PORT=27017 \
    IOTINFER_KAFKA_DATA="$K8S_STATE/kafka" IOTINFER_MONGO_DATA="$K8S_STATE/mongo" \
    k8s_in "$ROOT/dev" services "$1" "${K8S_SERVICES[@]}"
}

k8s_kubectl() { k8s_in "$K8S_BIN/kubectl" --kubeconfig "$K8S_STATE/admin.conf" "$@"; }

k8s_helm() {
  helm_install >/dev/null || die "no helm"
  k8s_in "$HELM" --kubeconfig "$K8S_STATE/admin.conf" "$@"
}

# Starts component $1 inside the cluster's namespace unless it runs, and waits until it is healthy.
k8s_start() {
  local component=$1 pidfile="$K8S_STATE/$1.pid" logfile="$K8S_STATE/logs/$1.log"
  if ! live_pid "$pidfile" >/dev/null; then
    # The last run's log, for when a component died: why it did is at the end of that one.
    [[ -f $logfile ]] && mv "$logfile" "$logfile.1"
    log "starting $component (log: $logfile)"
    k8s_command "$component"
    setsid nsenter --net="$K8S_NETNS_PATH" "${K8S_COMMAND[@]}" >"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  wait_until_up "$pidfile" "$logfile" "$component" k8s_healthy "$component"
}

k8s_up() {
  k8s_install
  apt_install_missing openssl curl "${APT_K8S_NODE_PACKAGES[@]}"
  k8s_node_images
  mkdir -p "$K8S_STATE/logs"
  k8s_netns_up
  k8s_pki
  k8s_node_pki
  k8s_node_files
  k8s_save_kernel_tunables
  local component
  for component in "${K8S_CONTROL_PLANE[@]}"; do k8s_start "$component"; done
  k8s_services up
  k8s_node_rbac
  k8s_start containerd
  k8s_import_images
  k8s_start kubelet
  k8s_start kube-proxy
  local start=$SECONDS
  until k8s_node_ready; do
    ((SECONDS - start < SERVICE_START_TIMEOUT)) || die "node $K8S_NODE_NAME did not become Ready: ./dev k8s kubectl describe node"
    sleep 1
  done
  log "node $K8S_NODE_NAME is Ready ($((SECONDS - start))s)"
  k8s_dns_up
  log "cluster up: ./dev k8s kubectl get pods -A; Kafka at $K8S_NODE_IP:9092, the Mongo-wire server at $K8S_NODE_IP:27017"
}

k8s_down() {
  # The controllers first, so that no pod is made again while the kubelet removes them.
  stop_pidfile "$K8S_STATE/kube-controller-manager.pid" kube-controller-manager
  stop_pidfile "$K8S_STATE/kube-scheduler.pid" kube-scheduler
  k8s_drain_pods
  stop_pidfile "$K8S_STATE/kube-proxy.pid" kube-proxy
  stop_pidfile "$K8S_STATE/kubelet.pid" kubelet
  k8s_node_leftovers
  local n
  for ((n = ${#K8S_CONTROL_PLANE[@]} - 1; n >= 0; n--)); do
    stop_pidfile "$K8S_STATE/${K8S_CONTROL_PLANE[n]}.pid" "${K8S_CONTROL_PLANE[n]}"
  done
  stop_pidfile "$K8S_STATE/containerd.pid" containerd
  [[ -e $K8S_NETNS_PATH ]] && k8s_services down
  k8s_node_leftovers
  k8s_node_cgroups
  k8s_restore_kernel_tunables
  rm -rf "$K8S_STATE/etcd" "$K8S_STATE/kafka" "$K8S_STATE/mongo" "$K8S_STATE/kubelet" "$K8S_STATE/pod-logs" "$K8S_RUN"
  # The kubelet links each container's log into /var/log/containers, whatever its pod log directory.
  find /var/log/containers -maxdepth 1 -type l -lname "$K8S_STATE/*" -delete 2>/dev/null
  if [[ -e $K8S_NETNS_PATH ]]; then
    ip netns delete "$K8S_NETNS"
    log "network namespace $K8S_NETNS deleted"
  fi
}

k8s_status() {
  local component pid rc=0
  for component in "${K8S_CONTROL_PLANE[@]}" "${K8S_NODE[@]}"; do
    if pid=$(live_pid "$K8S_STATE/$component.pid"); then
      if k8s_healthy "$component"; then echo "$component: healthy (pid $pid)"; else echo "$component: running (pid $pid), not healthy"; rc=3; fi
    else
      echo "$component: stopped"
      rc=3
    fi
  done
  [[ -e $K8S_NETNS_PATH ]] && { k8s_services status || rc=3; }
  if live_pid "$K8S_STATE/kube-apiserver.pid" >/dev/null; then
    if k8s_node_ready; then echo "node $K8S_NODE_NAME: Ready"; else echo "node $K8S_NODE_NAME: not Ready"; rc=3; fi
    local dns
    dns=$(k8s_kubectl -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}' 2>/dev/null)
    if [[ ${dns:-0} -ge 1 ]]; then echo "CoreDNS: ready at $K8S_DNS_IP"; else echo "CoreDNS: not ready"; rc=3; fi
  fi
  return "$rc"
}

K8S_DEMO_NAMESPACE=iotinfer
K8S_DEMO_OUT=iotinfer-k8s-demo

# The number of documents in the demo's `images` collection.
k8s_demo_stored() {
  k8s_in "$VENV/bin/python" -c 'import pymongo, sys
print(pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)["iotinfer"].images.count_documents({}))' \
    "mongodb://$K8S_NODE_IP:27017"
}

# A one-off pod of the iotinfer image running the command ARGS; its output on ours.
k8s_demo_run() {
  k8s_kubectl -n "$K8S_DEMO_NAMESPACE" run "iotinfer-demo-$RANDOM" --rm -i --quiet --restart=Never \
    --image="$IOTINFER_IMAGE" --image-pull-policy=Never --command -- "$@"
}

k8s_demo() {
  setup_python
  cmd_image all
  k8s_up
  local chart="$ROOT/deploy/helm/iotinfer" values="$ROOT/deploy/helm/examples/local-k8s.yaml"
  local store="mongodb://$K8S_NODE_IP:27017" before start=$SECONDS
  before=$(k8s_demo_stored)
  log "installing the chart: release iotinfer in namespace $K8S_DEMO_NAMESPACE, with ${values#"$ROOT"/}"
  # Each run's images have ids of their own, so a second demo adds to the first.
  k8s_helm upgrade --install iotinfer "$chart" -n "$K8S_DEMO_NAMESPACE" --create-namespace -f "$values" \
    --set producer.runId="demo$(date +%s)" --wait --timeout 10m >/dev/null
  log "every pod is Ready; the producer Job sends 20,000 images from 8 devices (2 and 5 faulty)"
  until (($(k8s_demo_stored) >= before + 20000)); do
    ((SECONDS - start < 900)) || die "the images were not all stored in 15 minutes: ./dev k8s kubectl -n $K8S_DEMO_NAMESPACE get pods"
    sleep 2
  done
  log "20,000 images inferred and stored in $((SECONDS - start)) s; batch runs on all of them (helm upgrade)"
  k8s_helm upgrade iotinfer "$chart" -n "$K8S_DEMO_NAMESPACE" --reuse-values --set producer.enabled=false \
    --wait --wait-for-jobs --timeout 10m >/dev/null
  k8s_kubectl -n "$K8S_DEMO_NAMESPACE" get pods
  echo
  k8s_demo_run iotinfer report results --store "$store"
  # The charts, made in a pod and carried out as a tar stream.
  rm -rf "$K8S_DEMO_OUT"
  mkdir -p "$K8S_DEMO_OUT"
  k8s_demo_run sh -c "iotinfer batch --store $store --out /tmp/out >&2 && tar -C /tmp/out -cf - ." 2>/dev/null |
    tar -C "$K8S_DEMO_OUT" -xf - || die "the charts could not be made"
  log "the charts and CSV files are in $K8S_DEMO_OUT/:"
  ls "$K8S_DEMO_OUT"
  log "the cluster stays up: ./dev k8s kubectl -n $K8S_DEMO_NAMESPACE get pods; ./dev k8s down ends it"
}

cmd_k8s() {
  case "${1:-}" in
    up | down | status | kubectl | helm | demo) [[ $(id -u) -eq 0 ]] || die "./dev k8s $1 needs root (network namespaces, and the node's mounts)" ;;
  esac
  case "${1:-}" in
    up) k8s_up ;;
    down) k8s_down ;;
    status) k8s_status ;;
    kubectl)
      shift
      k8s_kubectl "$@"
      ;;
    helm)
      shift
      k8s_helm "$@"
      ;;
    demo) k8s_demo ;;
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
    *) die "usage: ./dev k8s build|up|down|status|demo|kubectl ARGS|helm ARGS" ;;
  esac
}
