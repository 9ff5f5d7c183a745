# Local servers for development and tests, sourced by ./dev (which sets ROOT, log, die).
# Each service has NAME_install, NAME_up, NAME_down and NAME_status. Server data and logs live
# in $ROOT/.cache/NAME (git-ignored); downloaded artifacts in $ARTIFACTS, shared by every
# checkout on the machine, so a fresh clone (as CI uses) reuses them.

ARTIFACTS="${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer"
KAFKA_VERSION=3.9.1
KAFKA_PORT=9092
KAFKA_HOME="$ARTIFACTS/kafka-$KAFKA_VERSION"
KAFKA_DATA="$ROOT/.cache/kafka"
SERVICE_START_TIMEOUT=60
SERVICE_STOP_TIMEOUT=30

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid in $1 if that process is alive, else nothing.
live_pid() {
  local pid
  [[ -f "$1" ]] && pid=$(<"$1") && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops the process in pidfile $1: TERM, then KILL after SERVICE_STOP_TIMEOUT seconds.
stop_pidfile() {
  local pid name="$2"
  pid=$(live_pid "$1") || { rm -f "$1"; return 0; }
  kill -TERM "$pid"
  for ((i = 0; i < SERVICE_STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$1"; log "$name stopped"; return 0; }
    sleep 0.1
  done
  log "$name did not stop in ${SERVICE_STOP_TIMEOUT}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

kafka_install() {
  [[ -f "$KAFKA_HOME/.complete" ]] && return 0
  log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME"
  mkdir -p "$KAFKA_HOME"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
}

kafka_java() {
  java -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_up() {
  if port_open "$KAFKA_PORT"; then
    live_pid "$KAFKA_DATA/pid" >/dev/null || log "port $KAFKA_PORT is taken by a Kafka this checkout did not start; using it"
    return 0
  fi
  kafka_install
  mkdir -p "$KAFKA_DATA"
  { cat "$ROOT/scripts/kafka/server.properties"; echo "log.dirs=$KAFKA_DATA/data"; } >"$KAFKA_DATA/server.properties"
  if [[ ! -f "$KAFKA_DATA/data/meta.properties" ]]; then
    local cluster_id
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | head -c 22)
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DATA/server.properties" >"$KAFKA_DATA/format.log"
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_DATA/kafka.log)"
  # A small heap and SerialGC keep the broker light next to the tests on a 2-core machine.
  KAFKA_HEAP=${KAFKA_HEAP:-512m}
  setsid java -Xms128m -Xmx"$KAFKA_HEAP" -XX:+UseSerialGC \
    -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" -cp "$KAFKA_HOME/libs/*" \
    kafka.Kafka "$KAFKA_DATA/server.properties" >"$KAFKA_DATA/kafka.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DATA/pid"
  local start=$SECONDS
  until grep -q "Transition from STARTING to STARTED" "$KAFKA_DATA/kafka.log" 2>/dev/null && port_open "$KAFKA_PORT"; do
    live_pid "$KAFKA_DATA/pid" >/dev/null || { tail -20 "$KAFKA_DATA/kafka.log" >&2; die "Kafka exited during start-up"; }
    ((SECONDS - start < SERVICE_START_TIMEOUT)) || { kafka_down; die "Kafka did not start in ${SERVICE_START_TIMEOUT}s"; }
    sleep 0.2
  done
  log "Kafka is up ($((SECONDS - start))s)"
}

kafka_down() { stop_pidfile "$KAFKA_DATA/pid" Kafka; }

kafka_status() {
  local pid
  if pid=$(live_pid "$KAFKA_DATA/pid"); then
    echo "kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT, data $KAFKA_DATA"
  elif port_open "$KAFKA_PORT"; then
    echo "kafka: port $KAFKA_PORT answers, but not a broker this checkout started"
  else
    echo "kafka: stopped"
    return 3
  fi
}

# Deletes the broker's data (topics, offsets); the next `up` formats a new cluster.
kafka_reset() {
  kafka_down
  rm -rf "$KAFKA_DATA"
}

SERVICES=(kafka)

cmd_services() {
  local action="${1:-status}"
  shift || true
  local names=("$@")
  ((${#names[@]})) || names=("${SERVICES[@]}")
  local name rc=0
  for name in "${names[@]}"; do
    [[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name' (known: ${SERVICES[*]})"
    case "$action" in
      up | down | status | reset) "${name}_${action}" || rc=$? ;;
      *) die "usage: ./dev services up|down|status|reset [${SERVICES[*]}]" ;;
    esac
  done
  return "$rc"
}
