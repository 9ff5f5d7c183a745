# Local servers for development and tests, sourced by ./dev (which sets ROOT, log, die).
# Each service has NAME_install, NAME_up, NAME_down and NAME_status. Server data and logs live
# in $ROOT/.cache/NAME (git-ignored); downloaded artifacts in $ARTIFACTS, shared by every
# checkout on the machine, so a fresh clone (as CI uses) reuses them.
# shellcheck shell=bash

ARTIFACTS="${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer"
# shellcheck source=scripts/go-toolchain.sh
source "$ROOT/scripts/go-toolchain.sh"
KAFKA_VERSION=3.9.1
KAFKA_PORT=9092
KAFKA_HOME="$ARTIFACTS/kafka-$KAFKA_VERSION"
KAFKA_DATA="${IOTINFER_KAFKA_DATA:-$ROOT/.cache/kafka}"
# IOTINFER_KAFKA_BROKERS=N (N > 1) makes `up` start a cluster of N brokers instead, as
# production runs: replication factor N, min.insync.replicas 2. A test that kills brokers runs
# its own (tests/chaos). `up` then starts whichever of them is not running.
KAFKA_BROKERS="${IOTINFER_KAFKA_BROKERS:-1}"
SERVICE_START_TIMEOUT=60
SERVICE_STOP_TIMEOUT=30
# The address Kafka and the Mongo-wire server listen on (and Kafka advertises). Another one only
# inside a network namespace of our own: ./dev k8s runs them at its node's address for the pods.
SERVICES_HOST="${IOTINFER_SERVICES_HOST:-127.0.0.1}"

# True when something accepts TCP connections on $SERVICES_HOST (or $2):$1.
port_open() { (exec 3<>"/dev/tcp/${2:-$SERVICES_HOST}/$1") 2>/dev/null; }

# The pid in $1 if that process is alive, else nothing.
live_pid() {
  local pid
  [[ -f "$1" ]] && pid=$(<"$1") && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops the process in pidfile $1 (named $2): signal $3 (TERM by default), then KILL after
# SERVICE_STOP_TIMEOUT seconds.
stop_pidfile() {
  local pid name="$2" signal="${3:-TERM}" i
  pid=$(live_pid "$1") || { rm -f "$1"; return 0; }
  kill -"$signal" "$pid"
  for ((i = 0; i < SERVICE_STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$1"; log "$name stopped"; return 0; }
    sleep 0.1
  done
  log "$name did not stop in ${SERVICE_STOP_TIMEOUT}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

# True, after saying so unless it is ours, when something already answers on port $1:
# `up` then uses it. $2: the pidfile of the server this checkout starts; $3: what it is.
already_up() {
  port_open "$1" || return 1
  live_pid "$2" >/dev/null || log "port $1 is taken by a $3 this checkout did not start; using it"
  return 0
}

# Waits until the readiness check "$4 ..." passes for server $3 (pidfile $1, log $2); dies
# with the log's tail if it exits, and stops it if it is not up in SERVICE_START_TIMEOUT.
wait_until_up() {
  local pidfile=$1 logfile=$2 name=$3 start=$SECONDS
  shift 3
  until "$@"; do
    live_pid "$pidfile" >/dev/null || { tail -20 "$logfile" >&2; die "$name exited during start-up"; }
    if ((SECONDS - start >= SERVICE_START_TIMEOUT)); then
      stop_pidfile "$pidfile" "$name"
      die "$name did not start in ${SERVICE_START_TIMEOUT}s"
    fi
    sleep 0.1
  done
  log "$name is up ($((SECONDS - start))s)"
}

# Prints the state of service $1 (pidfile $2, port $3, data $4, address $5, by default
# $SERVICES_HOST); returns 3 when stopped.
service_status() {
  local pid host="${5:-$SERVICES_HOST}"
  if pid=$(live_pid "$2"); then
    echo "$1: running (pid $pid) on $host:$3, data $4"
  elif port_open "$3" "$host"; then
    echo "$1: port $3 answers, but not a server this checkout started"
  else
    echo "$1: stopped"
    return 3
  fi
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

# Broker $1 (from 1): its directory (the data directory itself when there is one broker, as
# always), and the port clients reach it on.
kafka_dir() { if ((KAFKA_BROKERS == 1)); then echo "$KAFKA_DATA"; else echo "$KAFKA_DATA/broker-$1"; fi; }
kafka_port() { echo $((KAFKA_PORT + $1 - 1)); }

# The server.properties of broker $1.
kafka_properties() {
  local id=$1 n=$KAFKA_BROKERS
  if ((n == 1)); then
    sed "s/127\.0\.0\.1/$SERVICES_HOST/g" "$ROOT/scripts/kafka/server.properties"
  else
    [[ $SERVICES_HOST == 127.0.0.1 ]] || die "IOTINFER_SERVICES_HOST is for a single broker"
    # Every broker is also a KRaft controller, so a quorum of N survives a broker's loss.
    # Clients, replication and the quorum each have a listener of their own (ports 9092+,
    # 9192+, 9292+), so that a test can cut the clients off a broker while it still replicates.
    local voters="" j
    for ((j = 1; j <= n; j++)); do voters+="${voters:+,}$j@127.0.0.1:$((KAFKA_PORT + 199 + j))"; done
    local isr=$((n >= 3 ? 2 : 1))
    cat <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$id"),REPLICATION://127.0.0.1:$((KAFKA_PORT + 99 + id)),CONTROLLER://127.0.0.1:$((KAFKA_PORT + 199 + id))
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$id"),REPLICATION://127.0.0.1:$((KAFKA_PORT + 99 + id))
controller.listener.names=CONTROLLER
inter.broker.listener.name=REPLICATION
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT
num.partitions=6
default.replication.factor=$n
min.insync.replicas=$isr
auto.create.topics.enable=false
offsets.topic.replication.factor=$n
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$n
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
EOF
  fi
  echo "log.dirs=$(kafka_dir "$id")/data"
}

kafka_ready() { grep -q "Transition from STARTING to STARTED" "$1/kafka.log" 2>/dev/null && port_open "$2"; }

# Starts broker $1 unless it runs, and adds it to KAFKA_STARTED; formats its storage with
# cluster id $2 the first time.
kafka_start_broker() {
  local id=$1 cluster_id=$2 dir port
  dir=$(kafka_dir "$id")
  port=$(kafka_port "$id")
  already_up "$port" "$dir/pid" Kafka && return 0
  mkdir -p "$dir"
  kafka_properties "$id" >"$dir/server.properties"
  log "starting Kafka broker $id on $SERVICES_HOST:$port (log: $dir/kafka.log)"
  kafka_start "$dir" "$cluster_id"
  KAFKA_STARTED+=("$id")
}

# Starts the broker of $1/server.properties in the background (log and pid in $1), formatting
# its storage with cluster id $2 the first time.
kafka_start() {
  local dir=$1 cluster_id=$2
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log"
  fi
  # A small heap keeps the broker light next to the tests on a 2-core machine. The collector
  # is the one kafka-server-start.sh sets: SerialGC's young collections stopped every client for
  # 18 ms on average every 1.6 s at 1,000 images/s, now and then for 200 ms; G1 with a 20 ms goal
  # halved the average and the long stalls went away (docs/bench-log.md, 2026-12-05).
  setsid java -Xms128m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" -cp "$KAFKA_HOME/libs/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

# A new cluster id: a URL-safe base64 UUID, as `kafka-storage random-uuid` prints without a JVM
# start. One starting with '-' would read as an option (1 run in 64 failed so); Kafka's own never
# does.
kafka_new_cluster_id() {
  local id=-
  while [[ $id == -* ]]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | head -c 22); done
  echo "$id"
}

kafka_up() {
  kafka_install
  mkdir -p "$KAFKA_DATA"
  # One id for the whole cluster, kept for the brokers formatted later.
  local cluster_id id dir
  if [[ -f "$KAFKA_DATA/cluster-id" ]]; then
    cluster_id=$(<"$KAFKA_DATA/cluster-id")
  else
    cluster_id=$(kafka_new_cluster_id)
  fi
  KAFKA_STARTED=()
  for ((id = 1; id <= KAFKA_BROKERS; id++)); do kafka_start_broker "$id" "$cluster_id"; done
  echo "$cluster_id" >"$KAFKA_DATA/cluster-id"
  # All are started before any is waited for: a quorum's members are up only together.
  for id in "${KAFKA_STARTED[@]}"; do
    dir=$(kafka_dir "$id")
    wait_until_up "$dir/pid" "$dir/kafka.log" "Kafka broker $id" kafka_ready "$dir" "$(kafka_port "$id")"
  done
}

kafka_down() {
  local id pid
  # All at once: the last broker of a quorum stopped one by one would wait for the others.
  for ((id = 1; id <= KAFKA_BROKERS; id++)); do
    if pid=$(live_pid "$(kafka_dir "$id")/pid"); then kill -TERM "$pid"; fi
  done
  for ((id = 1; id <= KAFKA_BROKERS; id++)); do stop_pidfile "$(kafka_dir "$id")/pid" "Kafka broker $id"; done
}

kafka_status() {
  local id rc=0
  for ((id = 1; id <= KAFKA_BROKERS; id++)); do
    service_status "kafka broker $id" "$(kafka_dir "$id")/pid" "$(kafka_port "$id")" "$(kafka_dir "$id")" || rc=$?
  done
  return "$rc"
}

# Deletes the brokers' data (topics, offsets); the next `up` formats a new cluster.
kafka_reset() {
  kafka_down
  rm -rf "$KAFKA_DATA"
}

# A server speaking the MongoDB wire protocol: mongod when one is on PATH, else FerretDB 1.x
# (built from the Go module proxy) on one of its backends: its embedded SQLite (the default),
# or PostgreSQL, a private cluster of Debian's PostgreSQL 15 in the server's data directory.
FERRETDB_VERSION=v1.24.2
# Overridable so that a test can run a private server it may kill (tests/private_mongo.h);
# IOTINFER_MONGO_AUTH=USER:PASSWORD makes that server take only that account (FerretDB only).
MONGO_PORT="${IOTINFER_MONGO_PORT:-27017}"
FERRETDB_HOME="$ARTIFACTS/ferretdb-$FERRETDB_VERSION"
MONGO_DATA="${IOTINFER_MONGO_DATA:-$ROOT/.cache/mongo}"
# Absolute: PostgreSQL's tools run from /.
[[ $MONGO_DATA == /* ]] || MONGO_DATA="$PWD/$MONGO_DATA"
# FerretDB's backend, sqlite or postgresql: `--backend` (cmd_services), else this, else the one
# remembered in $MONGO_DATA/backend by the last `up`, else sqlite (or mongod when on PATH).
# Naming one means FerretDB even where mongod is on PATH.
MONGO_BACKEND="${IOTINFER_MONGO_BACKEND:-}"
# The PostgreSQL cluster behind FerretDB's postgresql backend: Debian's postgresql-15 package,
# listening on 127.0.0.1 only, on a port of its own (5432 is the one Debian's own cluster takes).
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
PG_PORT="${IOTINFER_PG_PORT:-5433}"

mongo_install() {
  # FERRETDB_ONLY: the secured server (scripts/secure.sh) is FerretDB even where mongod is.
  [[ -z ${FERRETDB_ONLY:-} ]] && command -v mongod >/dev/null && return 0
  [[ -x "$FERRETDB_HOME/ferretdb" ]] && return 0
  go_install || die "building FerretDB needs Go $GO_VERSION"
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy into $FERRETDB_HOME"
  # `go install ...@version` builds a binary that panics at start: the module zip lacks the
  # build/version/version.txt that FerretDB's release builds generate. So build a copy of
  # the module source with that one file written, as its docs describe.
  local src work
  src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -d "$src" ]] || die "could not download FerretDB $FERRETDB_VERSION from the Go module proxy"
  work=$(mktemp -d)
  cp -r "$src/." "$work"
  chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" >"$work/build/version/version.txt"
  mkdir -p "$FERRETDB_HOME"
  (cd "$work" && GOFLAGS=-trimpath go build -o "$FERRETDB_HOME/ferretdb.tmp" ./cmd/ferretdb)
  rm -rf "$work"
  mv "$FERRETDB_HOME/ferretdb.tmp" "$FERRETDB_HOME/ferretdb"
}

# The backend the FerretDB of $MONGO_DATA was last started on (nothing for mongod or none).
mongo_saved_backend() { cat "$MONGO_DATA/backend" 2>/dev/null || true; }

# What runs a command as the PostgreSQL cluster's owner, from /: PostgreSQL refuses to run as
# root, so root runs it as the `postgres` user that Debian's package makes (setpriv execs, so the
# server's pid is the one started); anyone else as themselves.
PG_AS_OWNER=(env -C /)
((EUID != 0)) || PG_AS_OWNER=(setpriv --reuid=postgres --regid=postgres --init-groups env -C /)

# Makes the cluster in $MONGO_DATA/pg once: the superuser `ferretdb` with a random password
# (kept, for clients, in $MONGO_DATA/pgpass, mode 0600; every connection must give it, so no
# other user of the machine gets in) and the database `ferretdb` that FerretDB keeps its
# collections in. Made in pg.new and renamed, so that an interrupted run leaves no half a cluster.
pg_init() {
  local dir="$MONGO_DATA/pg" new="$MONGO_DATA/pg.new" pwfile="$MONGO_DATA/pg.pwfile" password
  [[ -f "$dir/PG_VERSION" ]] && return 0
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "no user postgres: Debian's postgresql-$PG_VERSION makes it"
    # The postgres user may pass through the data directory (made 0700 by mktemp, say), not list it.
    chmod o+x "$MONGO_DATA"
    "${PG_AS_OWNER[@]}" test -x "$MONGO_DATA" ||
      die "the postgres user cannot reach $MONGO_DATA (a directory above it is closed to others); set IOTINFER_MONGO_DATA to one it can reach"
  fi
  log "making a PostgreSQL $PG_VERSION cluster in $dir"
  rm -rf "$new" "$pwfile"
  password=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
  (umask 077 && echo "*:*:*:ferretdb:$password" >"$MONGO_DATA/pgpass" && echo "$password" >"$pwfile" && mkdir "$new")
  if ((EUID == 0)); then chown postgres: "$pwfile" "$new"; fi
  # FerretDB takes only UTF8 and the C or en_US locales.
  "${PG_AS_OWNER[@]}" "$PG_BIN/initdb" -D "$new" -U ferretdb --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$MONGO_DATA/initdb.log" 2>&1 ||
    { rm -f "$pwfile"; tail -20 "$MONGO_DATA/initdb.log" >&2; die "initdb failed (log: $MONGO_DATA/initdb.log)"; }
  rm -f "$pwfile"
  # In single-user mode: no server, no port, no password needed yet.
  echo "CREATE DATABASE ferretdb" | "${PG_AS_OWNER[@]}" "$PG_BIN/postgres" --single -D "$new" postgres >>"$MONGO_DATA/initdb.log" 2>&1
  grep -q -E '^(ERROR|FATAL)' "$MONGO_DATA/initdb.log" &&
    { tail -20 "$MONGO_DATA/initdb.log" >&2; die "could not create the database ferretdb (log: $MONGO_DATA/initdb.log)"; }
  mv "$new" "$dir"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# Starts the cluster of $MONGO_DATA/pg unless it runs (making it the first time). Durable as
# PostgreSQL ships (fsync, synchronous_commit and full_page_writes on): a commit FerretDB
# acknowledged survives a crash of the machine, as in production, and measurements show what
# production would pay.
pg_up() {
  live_pid "$MONGO_DATA/postgresql.pid" >/dev/null && return 0
  apt_install_missing "postgresql-$PG_VERSION"
  port_open "$PG_PORT" 127.0.0.1 && die "port $PG_PORT is taken; IOTINFER_PG_PORT=PORT runs FerretDB's PostgreSQL on another"
  pg_init
  # Its Unix socket in the data directory, not Debian's /run/postgresql (made only by Debian's
  # own service), unless that path is too long for a socket: then TCP only.
  local sockets="$MONGO_DATA/pg-socket"
  mkdir -p "$sockets"
  chmod 0700 "$sockets"
  if ((EUID == 0)); then chown postgres: "$sockets"; fi
  if ((${#sockets} + 20 > 107)); then
    log "$sockets is too long a path for a Unix socket; PostgreSQL listens on TCP only"
    sockets=""
  fi
  log "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (log: $MONGO_DATA/postgresql.log)"
  setsid "${PG_AS_OWNER[@]}" "$PG_BIN/postgres" -D "$MONGO_DATA/pg" -h 127.0.0.1 -p "$PG_PORT" -k "$sockets" \
    -c cluster_name="iotinfer-mongo-$MONGO_PORT" >"$MONGO_DATA/postgresql.log" 2>&1 </dev/null &
  echo $! >"$MONGO_DATA/postgresql.pid"
  wait_until_up "$MONGO_DATA/postgresql.pid" "$MONGO_DATA/postgresql.log" "PostgreSQL $PG_VERSION" pg_ready
}

# A fast shutdown (SIGINT): FerretDB's pooled connections would hold off a smart one (SIGTERM).
pg_down() { stop_pidfile "$MONGO_DATA/postgresql.pid" "PostgreSQL $PG_VERSION" INT; }

pg_status() {
  local port=$PG_PORT
  [[ -f "$MONGO_DATA/pg/postmaster.pid" ]] && port=$(sed -n 4p "$MONGO_DATA/pg/postmaster.pid")
  service_status "mongo's postgresql" "$MONGO_DATA/postgresql.pid" "$port" "$MONGO_DATA/pg" 127.0.0.1
}

mongo_up() {
  local backend=$MONGO_BACKEND running
  [[ -n $backend ]] || backend=$(mongo_saved_backend)
  [[ $backend =~ ^(|sqlite|postgresql)$ ]] || die "unknown Mongo backend '$backend' (sqlite or postgresql)"
  if live_pid "$MONGO_DATA/pid" >/dev/null; then
    running=$(mongo_saved_backend)
    [[ $backend == "$running" ]] ||
      die "the Mongo server of $MONGO_DATA runs on ${running:-mongod}, not $backend; ./dev services down mongo first"
    # Its PostgreSQL, should it have stopped under it.
    [[ $running != postgresql ]] || pg_up
  fi
  already_up "$MONGO_PORT" "$MONGO_DATA/pid" "Mongo server" && return 0
  if [[ -n $backend ]]; then FERRETDB_ONLY=1 mongo_install; else mongo_install; fi
  mkdir -p "$MONGO_DATA"
  local what
  if [[ -z $backend ]] && command -v mongod >/dev/null; then
    [[ -z "${IOTINFER_MONGO_AUTH:-}" ]] || die "IOTINFER_MONGO_AUTH needs FerretDB, and mongod is on PATH"
    what=mongod
    mkdir -p "$MONGO_DATA/data"
    setsid mongod --bind_ip "$SERVICES_HOST" --port "$MONGO_PORT" --dbpath "$MONGO_DATA/data" \
      >"$MONGO_DATA/server.log" 2>&1 </dev/null &
  else
    backend=${backend:-sqlite}
    # Acknowledged before it reaches the disk, as MongoDB does by default (its journal is synced
    # every 100 ms) and as the broker does (Kafka does not fsync; replication makes both durable
    # in production): SQLite's WAL with synchronous=NORMAL syncs at checkpoints, not at each
    # commit. A crash of FerretDB loses nothing, a power loss the last writes. With an fsync a
    # commit, the store's writes waited 50-100 ms now and then behind the broker's writeback,
    # the p99 at 5,000 images/s (docs/latency.md).
    local args=(--handler=sqlite --sqlite-url="file:$MONGO_DATA/data/?_pragma=synchronous(normal)")
    what="FerretDB $FERRETDB_VERSION (SQLite)"
    if [[ $backend == sqlite ]]; then
      mkdir -p "$MONGO_DATA/data"
    else
      pg_up
      # The password from the pgpass file (PGPASSFILE), never on the command line. TCP, as
      # FerretDB reaches a PostgreSQL of its own in production.
      args=(--handler=postgresql --postgresql-url="postgres://ferretdb@127.0.0.1:$PG_PORT/ferretdb")
      what="FerretDB $FERRETDB_VERSION (PostgreSQL $PG_VERSION on :$PG_PORT)"
    fi
    if [[ -n "${IOTINFER_MONGO_AUTH:-}" ]]; then
      what+=" with authentication"
      args+=(--test-enable-new-auth --setup-database=admin --setup-username="${IOTINFER_MONGO_AUTH%%:*}"
        --setup-password="${IOTINFER_MONGO_AUTH#*:}")
    fi
    echo "$backend" >"$MONGO_DATA/backend"
    # Go collects garbage when the heap doubles (GOGC=100); FerretDB allocates for every document
    # it converts, and at 5,000 images/s its collector took a quarter of its CPU. At 400 its
    # CPU an image fell from 0.070 to 0.059 ms for about 10 MB more memory (docs/latency.md).
    GOGC=${GOGC:-400} PGPASSFILE="$MONGO_DATA/pgpass" setsid "$FERRETDB_HOME/ferretdb" --listen-addr="$SERVICES_HOST:$MONGO_PORT" \
      --state-dir="$MONGO_DATA" --debug-addr=- --telemetry=disable --log-level=warn "${args[@]}" \
      >"$MONGO_DATA/server.log" 2>&1 </dev/null &
  fi
  echo $! >"$MONGO_DATA/pid"
  log "starting $what on $SERVICES_HOST:$MONGO_PORT (log: $MONGO_DATA/server.log)"
  wait_until_up "$MONGO_DATA/pid" "$MONGO_DATA/server.log" "$what" port_open "$MONGO_PORT"
}

# FerretDB first, then its PostgreSQL (if it has one running), whatever the backend.
mongo_down() {
  stop_pidfile "$MONGO_DATA/pid" "Mongo server"
  pg_down
}

# Stopped (3) also when FerretDB runs without its PostgreSQL: `up` starts that again.
mongo_status() {
  local name=mongo rc=0
  case $(mongo_saved_backend) in
    sqlite) name+=" (FerretDB on SQLite)" ;;
    postgresql) name+=" (FerretDB on PostgreSQL)" ;;
  esac
  service_status "$name" "$MONGO_DATA/pid" "$MONGO_PORT" "$MONGO_DATA" || rc=$?
  if [[ $(mongo_saved_backend) == postgresql ]]; then pg_status || rc=$?; fi
  return "$rc"
}

# Deletes every database of the local server, on either backend, and the remembered backend.
mongo_reset() {
  mongo_down
  rm -rf "$MONGO_DATA"
}

# Spark Connect: the server from the pyspark distribution (PyPI), plus the Kafka source and
# the MongoDB connector from Maven Central. SPARK_VERSION must match the protos the client is
# generated from (CMake reads the same pin from ./dev).
SPARK_VERSION=4.0.0
SPARK_PORT="${IOTINFER_SPARK_PORT:-15002}"
SPARK_DIST="$ARTIFACTS/spark-$SPARK_VERSION"
SPARK_DATA="${IOTINFER_SPARK_DATA:-$ROOT/.cache/spark}"

spark_home() {
  local homes=("$SPARK_DIST"/lib/python3*/site-packages/pyspark)
  echo "${homes[0]}"
}

spark_install() {
  [[ -f "$SPARK_DIST/.complete" ]] && return 0
  log "installing pyspark $SPARK_VERSION (PyPI) and its connectors (Maven Central) into $SPARK_DIST"
  rm -rf "$SPARK_DIST"
  /usr/bin/python3 -m venv "$SPARK_DIST"
  "$SPARK_DIST/bin/pip" install -q --disable-pip-version-check "pyspark==$SPARK_VERSION"
  mvn -q -B -f "$ROOT/scripts/spark/pom.xml" -Dspark.version="$SPARK_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$SPARK_DIST/connectors"
  # Two versions of one library on the classpath fail at random; keep the distribution's.
  local jar base
  for jar in "$SPARK_DIST"/connectors/*.jar; do
    base=$(basename "$jar" | sed -E 's/-[0-9][0-9.]*(-[A-Za-z0-9.]+)?\.jar$//')
    compgen -G "$(spark_home)/jars/$base-[0-9]*.jar" >/dev/null && rm "$jar"
  done
  # The connectors run inside the server, with its access to Kafka and the store: exactly the
  # bytes pinned, and no other jar (the image's Spark is laid out from this directory too).
  local pinned="$ROOT/scripts/spark/connectors.sha256"
  (cd "$SPARK_DIST/connectors" && grep -v '^#' "$pinned" | sha256sum -c --quiet --strict -) ||
    die "the Spark connectors resolved from Maven Central do not match $pinned"
  [[ $(find "$SPARK_DIST/connectors" -name '*.jar' | wc -l) == $(grep -vc '^#' "$pinned") ]] ||
    die "Maven resolved connector jars that $pinned does not list"
  touch "$SPARK_DIST/.complete"
}

# Starts a Spark Connect server in the background: named $1, on 127.0.0.1:$2, with its log, pid
# and scratch space in $3; $4: more JVM options for the driver. The caller's environment reaches
# it (a token, say).
spark_start() {
  local name=$1 port=$2 dir=$3 java_options=${4:-} jars
  jars=$(printf '%s,' "$SPARK_DIST"/connectors/*.jar)
  # local[2] on a 2-core machine; 2 shuffle partitions instead of 200, or every small
  # aggregation and streaming state store pays for 200 tasks. The heap is kept small because
  # Kafka and the Mongo server share the machine.
  SPARK_HOME=$(spark_home) SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$dir/tmp" setsid "$(spark_home)/bin/spark-submit" \
    --class org.apache.spark.sql.connect.service.SparkConnectServer --name "$name" \
    --master 'local[2]' --driver-memory "${SPARK_DRIVER_MEMORY:-1g}" --jars "${jars%,}" \
    --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/scripts/spark/log4j2.properties${java_options:+ $java_options}" \
    --conf spark.connect.grpc.binding.address=127.0.0.1 --conf spark.connect.grpc.binding.port="$port" \
    --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
    --conf spark.ui.enabled=false --conf spark.sql.shuffle.partitions=2 \
    --conf spark.sql.streaming.forceDeleteTempCheckpointLocation=true \
    >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

spark_ready() { grep -q "Spark Connect server started" "$SPARK_DATA/server.log" 2>/dev/null && port_open "$SPARK_PORT" 127.0.0.1; }

spark_up() {
  already_up "$SPARK_PORT" "$SPARK_DATA/pid" "Spark Connect server" && return 0
  spark_install
  mkdir -p "$SPARK_DATA/tmp"
  log "starting Spark $SPARK_VERSION Connect server on 127.0.0.1:$SPARK_PORT (log: $SPARK_DATA/server.log)"
  spark_start iotinfer-spark-connect "$SPARK_PORT" "$SPARK_DATA"
  wait_until_up "$SPARK_DATA/pid" "$SPARK_DATA/server.log" "Spark Connect server" spark_ready
}

spark_down() { stop_pidfile "$SPARK_DATA/pid" "Spark Connect server"; }

spark_status() { service_status spark "$SPARK_DATA/pid" "$SPARK_PORT" "$SPARK_DATA"; }

spark_reset() {
  spark_down
  rm -rf "$SPARK_DATA"
}

SERVICES=(kafka mongo spark)

# shellcheck source=scripts/secure.sh
source "$ROOT/scripts/secure.sh"

# `--secure` (anywhere after the action) means the secured servers of scripts/secure.sh;
# `--backend sqlite|postgresql`, FerretDB's backend for the plain Mongo server's `up`.
cmd_services() {
  local action="${1:-status}"
  shift || true
  local names=() suffix="" usage backend_flag=""
  usage="usage: ./dev services up|down|status|reset [${SERVICES[*]}] [--secure] [--backend sqlite|postgresql]"
  while (($#)); do
    case "$1" in
      --secure) suffix=_secure ;;
      --backend | --backend=*)
        if [[ $1 == --backend ]]; then backend_flag=${2:-}; shift || true; else backend_flag=${1#--backend=}; fi
        [[ $backend_flag =~ ^(sqlite|postgresql)$ ]] || die "$usage"
        MONGO_BACKEND=$backend_flag
        ;;
      -*) die "$usage" ;;
      *) names+=("$1") ;;
    esac
    shift
  done
  [[ -z $suffix || -z $backend_flag ]] ||
    die "--backend is for the plain Mongo server; the secured one is FerretDB on SQLite"
  ((${#names[@]})) || names=("${SERVICES[@]}")
  local name rc=0
  for name in "${names[@]}"; do
    [[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name' (known: ${SERVICES[*]})"
    case "$action" in
      up | down | status | reset) "${name}${suffix}_${action}" || rc=$? ;;
      *) die "$usage" ;;
    esac
  done
  return "$rc"
}
