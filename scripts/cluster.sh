# The Helm chart's topology as processes on this machine, sourced by ./dev (which sets ROOT,
# BUILD, log, die and sources services.sh first); tests run it directly through
# scripts/cluster (no setup or build). One state directory holds every process's pid file
# and log, and the settings it was started with, so `status`, `produce`, `batch` and `down`
# need no flags repeated:
#   cluster up [--infer-replicas N] [--stream-engine native|spark|none] [--prefix P] [--base-port B]
#   cluster status | produce [produce flags] | batch [batch flags] | down
# Each replica gets its own endpoint port (B+1 sink, B+2 stream, B+10+i infer i) and, like a
# pod, a stable instance id (infer-0, infer-1, ...). The servers themselves are not started
# here: ./dev cluster up starts them first.
# shellcheck shell=bash

CLUSTER_STATE="${IOTINFER_CLUSTER_STATE:-$ROOT/.cache/cluster}"
CLUSTER_STOP_TIMEOUT=30

# Names derived from a prefix, the way the chart's values name topics, groups and the database.
cluster_names() {
  local prefix=$1
  IMAGES_TOPIC="${prefix}images"
  INFERENCES_TOPIC="${prefix}inferences"
  GROUP_PREFIX="${prefix}iotinfer"
  # MongoDB database names allow no '.', '/', '$' or spaces; the prefix is checked for these.
  DATABASE="${prefix//-/_}iotinfer"
}

cluster_load() {
  [[ -f "$CLUSTER_STATE/settings" ]] || die "no cluster is up (no $CLUSTER_STATE/settings)"
  # shellcheck source=/dev/null
  source "$CLUSTER_STATE/settings"
  # shellcheck disable=SC2153 # PREFIX comes from the settings file cluster_up wrote
  cluster_names "$PREFIX"
}

# Starts one component: $1 name (also its pid and log file), $2 endpoint port, then its
# iotinfer arguments.
cluster_start() {
  local name=$1 port=$2
  shift 2
  [[ -z "$(live_pid "$CLUSTER_STATE/$name.pid")" ]] || die "$name is already running"
  setsid "$IOTINFER_BIN" "$@" --http-port "$port" --http-host 127.0.0.1 >"$CLUSTER_STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_STATE/$name.pid"
  echo "$name $port" >>"$CLUSTER_STATE/components"
}

# The HTTP status of 127.0.0.1:$1$2, or 000 when nothing answers.
http_status() {
  local response
  response=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
    head -1 <&3) 2>/dev/null) || { echo 000; return; }
  echo "$response" | cut -d' ' -f2
}

cluster_up() {
  local replicas=3 engine=native prefix="" base=9400
  while (($#)); do
    case "$1" in
      --infer-replicas) replicas=$2; shift 2 ;;
      --stream-engine) engine=$2; shift 2 ;;
      --prefix) prefix=$2; shift 2 ;;
      --base-port) base=$2; shift 2 ;;
      *) die "cluster up: unknown flag '$1' (--infer-replicas N, --stream-engine native|spark|none, --prefix P, --base-port B)" ;;
    esac
  done
  [[ "$replicas" =~ ^[1-9][0-9]*$ && "$replicas" -le 50 ]] || die "--infer-replicas must be 1..50"
  [[ "$engine" =~ ^(native|spark|none)$ ]] || die "--stream-engine must be native, spark or none"
  [[ "$prefix" =~ ^[A-Za-z0-9_-]*$ ]] || die "--prefix may hold letters, digits, '_' and '-' only"
  [[ "$base" =~ ^[0-9]+$ && "$base" -ge 1024 && "$base" -le 65400 ]] || die "--base-port must be 1024..65400"
  [[ -x "$IOTINFER_BIN" ]] || die "no binary at $IOTINFER_BIN: run ./dev build"
  if [[ -f "$CLUSTER_STATE/components" ]]; then
    local name port
    while read -r name port; do
      [[ -z "$(live_pid "$CLUSTER_STATE/$name.pid")" ]] || die "a cluster is already up ($name): ./dev cluster down first"
    done <"$CLUSTER_STATE/components"
  fi
  rm -rf "$CLUSTER_STATE"
  mkdir -p "$CLUSTER_STATE"
  printf 'PREFIX=%q\nREPLICAS=%q\nENGINE=%q\nBASE_PORT=%q\n' "$prefix" "$replicas" "$engine" "$base" \
    >"$CLUSTER_STATE/settings"
  cluster_names "$prefix"
  : >"$CLUSTER_STATE/components"
  export IOTINFER_BROKERS="127.0.0.1:$KAFKA_PORT" IOTINFER_STORE="mongodb://127.0.0.1:$MONGO_PORT"
  export IOTINFER_DB="$DATABASE" IOTINFER_SPARK="sc://127.0.0.1:$SPARK_PORT"

  log "starting $replicas infer replica(s), sink and ${engine/none/no} stream ($IMAGES_TOPIC -> $INFERENCES_TOPIC -> $DATABASE)"
  local i
  for ((i = 0; i < replicas; i++)); do
    cluster_start "infer-$i" $((base + 10 + i)) infer --group "$GROUP_PREFIX-infer" --instance-id "infer-$i" \
      --input-topic "$IMAGES_TOPIC" --output-topic "$INFERENCES_TOPIC" --dlq-topic "$IMAGES_TOPIC.dlq" \
      --threads 1
  done
  cluster_start sink $((base + 1)) sink --group "$GROUP_PREFIX-sink" --instance-id sink-0 \
    --input-topic "$INFERENCES_TOPIC" --dlq-topic "$INFERENCES_TOPIC.dlq" --accepted-topic "$INFERENCES_TOPIC.accepted"
  if [[ "$engine" != none ]]; then
    local stream_args=(stream --engine "$engine" --group "$GROUP_PREFIX-stream" --topic "$INFERENCES_TOPIC.accepted")
    [[ "$engine" == spark ]] && stream_args+=(--query-name "${GROUP_PREFIX//-/_}_stream"
      --checkpoint "$CLUSTER_STATE/spark-checkpoint")
    cluster_start stream $((base + 2)) "${stream_args[@]}"
  fi
  cluster_wait_healthy
  cluster_status
}

# Waits until every component answers /healthz (dies with the log of one that exited), then
# up to SERVICE_START_TIMEOUT until all are ready: an infer replica is ready once it has
# partitions, which takes a group rebalance.
cluster_wait_healthy() {
  local name port start=$SECONDS
  while read -r name port; do
    until [[ "$(http_status "$port" /healthz)" == 200 ]]; do
      if [[ -z "$(live_pid "$CLUSTER_STATE/$name.pid")" ]]; then
        tail -20 "$CLUSTER_STATE/$name.log" >&2
        die "$name exited during start-up (log: $CLUSTER_STATE/$name.log)"
      fi
      ((SECONDS - start < SERVICE_START_TIMEOUT)) || die "$name did not answer /healthz in ${SERVICE_START_TIMEOUT}s"
      sleep 0.2
    done
  done <"$CLUSTER_STATE/components"
  # All ready at once: a replica that was ready loses its partitions for a moment when the next
  # one joins the group, so checking each in turn could pass while one is unready again.
  until cluster_all_ready || ((SECONDS - start >= SERVICE_START_TIMEOUT)); do sleep 0.2; done
}

cluster_all_ready() {
  local name port
  while read -r name port; do
    [[ "$(http_status "$port" /readyz)" == 200 ]] || return 1
  done <"$CLUSTER_STATE/components"
}

# One line per component: pid, endpoint, and whether /readyz says it is ready. An infer
# replica without partitions (more replicas than partitions) is alive but not ready.
cluster_status() {
  cluster_load
  local name port pid ready rc=0
  printf '%-10s %-8s %-32s %s\n' component pid endpoints ready
  while read -r name port; do
    pid=$(live_pid "$CLUSTER_STATE/$name.pid") || { pid=-; rc=3; }
    case "$(http_status "$port" /readyz)" in
      200) ready=yes ;;
      000) ready="no answer" ;;
      *) ready=no ;;
    esac
    printf '%-10s %-8s %-32s %s\n' "$name" "$pid" "http://127.0.0.1:$port/metrics" "$ready"
  done <"$CLUSTER_STATE/components"
  echo "topics $IMAGES_TOPIC -> $INFERENCES_TOPIC, database $DATABASE on 127.0.0.1:$MONGO_PORT, logs in $CLUSTER_STATE"
  return "$rc"
}

# Load for the cluster, like the chart's producer Job: `iotinfer produce` into its topic.
cluster_produce() {
  cluster_load
  "$IOTINFER_BIN" produce --brokers "127.0.0.1:$KAFKA_PORT" --topic "$IMAGES_TOPIC" "$@"
}

# The chart's batch Job: `iotinfer batch` over the cluster's database (any batch flag, e.g.
# --engine spark, goes through).
cluster_batch() {
  cluster_load
  "$IOTINFER_BIN" batch --store "mongodb://127.0.0.1:$MONGO_PORT" --db "$DATABASE" \
    --spark "sc://127.0.0.1:$SPARK_PORT" --out "$CLUSTER_STATE/results" "$@"
}

# SIGTERM to every component (each commits its batch and exits 0), SIGKILL after
# CLUSTER_STOP_TIMEOUT; returns non-zero when one had to be killed or exited with an error.
cluster_down() {
  [[ -f "$CLUSTER_STATE/components" ]] || { log "no cluster is up"; return 0; }
  local name port pid rc=0 pids=()
  while read -r name port; do
    if pid=$(live_pid "$CLUSTER_STATE/$name.pid"); then
      kill -TERM "$pid"
      pids+=("$name:$pid")
    fi
  done <"$CLUSTER_STATE/components"
  local entry start=$SECONDS
  for entry in "${pids[@]}"; do
    name=${entry%%:*} pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < CLUSTER_STOP_TIMEOUT)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in ${CLUSTER_STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      rc=1
    elif ! grep -q "stopped" "$CLUSTER_STATE/$name.log"; then
      log "$name ended without its final line; see $CLUSTER_STATE/$name.log"
      rc=1
    fi
    rm -f "$CLUSTER_STATE/$name.pid"
  done
  log "cluster stopped (${#pids[@]} processes; logs kept in $CLUSTER_STATE; the servers stay up: ./dev services down)"
  return "$rc"
}

cmd_cluster_action() {
  local action="${1:-status}"
  shift || true
  case "$action" in
    up) cluster_up "$@" ;;
    down) cluster_down ;;
    status) cluster_status ;;
    produce) cluster_produce "$@" ;;
    batch) cluster_batch "$@" ;;
    *) die "usage: cluster up [--infer-replicas N] [--stream-engine native|spark|none] [--prefix P] [--base-port B] | status | produce [flags] | batch [flags] | down" ;;
  esac
}
