# The local servers with security on, sourced by scripts/services.sh:
#   ./dev services up|down|status|reset [kafka|mongo|spark] --secure
# They run beside the plain ones, on ports of their own, so that tests of both kinds share a run:
#   Kafka        SASL_SSL with SCRAM-SHA-512 on 127.0.0.1:9096, ACLs on (each service's user may use
#                only its own topics, consumer group and transactional ids);
#   Mongo-wire   FerretDB over TLS only, with authentication, on 127.0.0.1:27018;
#   Spark        Spark Connect with a pre-shared token, behind nginx terminating TLS (Spark
#                Connect has no TLS of its own) on 127.0.0.1:15004.
# One test CA, made here with openssl at the first `up` and never committed, signs the servers'
# certificate. The CA, the passwords, the token and ready-made client settings live in
# $SECURE_DIR (mode 0700), where tests and people read them:
#   pki/ca.pem                  the CA to trust; pki/untrusted-ca.pem: a CA that signed nothing
#   kafka/USER.properties       librdkafka settings of USER, for --kafka-config
#   mongo/uri, mongo/password   the store's URI without the password, and the password
#   spark/token                 Spark Connect's token
# No secret is ever on a command line: servers take theirs from files and the environment.
# shellcheck shell=bash

SECURE_DIR="${IOTINFER_SECURE_DIR:-$ROOT/.cache/secure}"
KAFKA_SECURE_PORT=9096
# The controller's listener, and one for the admin account that the set-up and the broker's own
# inter-broker client use (SASL/PLAIN with a static account, loopback only): SCRAM users live
# in the cluster's metadata, so some account must exist before them.
KAFKA_SECURE_CONTROLLER_PORT=9097
KAFKA_SECURE_ADMIN_PORT=9098
KAFKA_SECURE_DATA="${IOTINFER_KAFKA_SECURE_DATA:-$ROOT/.cache/kafka-secure}"
# The services' accounts, and two that lack one right each for the tests;
# scripts/kafka/secure_setup.py grants each its rights.
KAFKA_SECURE_USERS=(produce infer sink stream infer-no-txn infer-no-dlq)
MONGO_SECURE_PORT=27018
MONGO_SECURE_USER=iotinfer
MONGO_SECURE_DATA="${IOTINFER_MONGO_SECURE_DATA:-$ROOT/.cache/mongo-secure}"
SPARK_SECURE_PORT=15004
SPARK_SECURE_BACKEND_PORT=15003
SPARK_SECURE_DATA="${IOTINFER_SPARK_SECURE_DATA:-$ROOT/.cache/spark-secure}"

# A random password (letters and digits), written to $SECURE_DIR/passwords/$1 the first time.
secure_secret() {
  local file="$SECURE_DIR/passwords/$1"
  if [[ ! -s $file ]]; then
    (umask 077 && mkdir -p "$SECURE_DIR/passwords" &&
      head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$file")
  fi
  cat "$file"
}

# The test CA and the servers' certificate (127.0.0.1 and localhost), once.
secure_pki() {
  local pki="$SECURE_DIR/pki"
  [[ -f "$pki/.complete" ]] && return 0
  log "making a test CA and the servers' certificate in $pki"
  rm -rf "$pki"
  (umask 077 && mkdir -p "$pki")
  local subj="/O=iotinfer development"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "$subj/CN=iotinfer test CA" \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "$subj/CN=localhost" \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$pki/server.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 825 -extfile "$pki/server.ext" -out "$pki/server.pem" 2>/dev/null
  # Kafka reads a PEM keystore as one file: the key (PKCS#8), then the certificate.
  cat "$pki/server.key" "$pki/server.pem" >"$pki/server-keystore.pem"
  # A CA that signed nothing here: a client trusting only it must refuse the servers.
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "$subj/CN=iotinfer untrusted CA" \
    -keyout "$pki/untrusted-ca.key" -out "$pki/untrusted-ca.pem" 2>/dev/null
  # The Spark server's JVM trusts the CA (its MongoDB connector verifies the store) from a
  # PKCS#12 trust store; a trust store's password guards only its integrity.
  keytool -importcert -noprompt -alias iotinfer-test-ca -file "$pki/ca.pem" -storetype PKCS12 \
    -keystore "$pki/truststore.p12" -storepass iotinfer-test-ca >/dev/null 2>&1
  rm -f "$pki/server.csr" "$pki/server.ext" "$pki/ca.srl"
  chmod 0644 "$pki/ca.pem" "$pki/untrusted-ca.pem" "$pki/truststore.p12"
  touch "$pki/.complete"
}

kafka_secure_properties() {
  local admin controller
  admin=$(secure_secret kafka-admin)
  controller=$(secure_secret kafka-controller)
  cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,CONTROLLER://127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT,ADMIN://127.0.0.1:$KAFKA_SECURE_ADMIN_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,ADMIN://127.0.0.1:$KAFKA_SECURE_ADMIN_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=ADMIN
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT,ADMIN:SASL_PLAINTEXT
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller" user_controller="$controller";
sasl.mechanism.controller.protocol=PLAIN
listener.name.admin.sasl.enabled.mechanisms=PLAIN
listener.name.admin.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin" user_admin="$admin";
sasl.mechanism.inter.broker.protocol=PLAIN
ssl.keystore.type=PEM
ssl.keystore.location=$SECURE_DIR/pki/server-keystore.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
log.dirs=$KAFKA_SECURE_DATA/data
EOF
}

# The client settings of Kafka user $1 (SCRAM over TLS), for --kafka-config.
kafka_secure_client_properties() {
  cat <<EOF
# The local secured broker's account "$1" (./dev services up kafka --secure).
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$1
sasl.password=$(secure_secret "kafka-$1")
ssl.ca.location=$SECURE_DIR/pki/ca.pem
EOF
}

kafka_secure_up() {
  already_up "$KAFKA_SECURE_PORT" "$KAFKA_SECURE_DATA/pid" "secured Kafka" && return 0
  kafka_install
  setup_python
  secure_pki
  local dir=$KAFKA_SECURE_DATA user
  (umask 077 && mkdir -p "$dir" "$SECURE_DIR/kafka")
  (umask 077 && kafka_secure_properties >"$dir/server.properties")
  for user in "${KAFKA_SECURE_USERS[@]}"; do
    (umask 077 && kafka_secure_client_properties "$user" >"$SECURE_DIR/kafka/$user.properties")
  done
  (umask 077 && cat >"$SECURE_DIR/kafka/admin.properties" <<EOF
# The local secured broker's super user, on its loopback admin listener.
security.protocol=SASL_PLAINTEXT
sasl.mechanisms=PLAIN
sasl.username=admin
sasl.password=$(secure_secret kafka-admin)
EOF
  )
  log "starting the secured Kafka broker on 127.0.0.1:$KAFKA_SECURE_PORT (SASL_SSL; log: $dir/kafka.log)"
  kafka_start "$dir" "$(kafka_new_cluster_id)"
  wait_until_up "$dir/pid" "$dir/kafka.log" "secured Kafka" kafka_ready "$dir" "$KAFKA_SECURE_PORT"
  # Users, topics and ACLs, through the admin listener; idempotent.
  "$VENV/bin/python" "$ROOT/scripts/kafka/secure_setup.py" \
    --bootstrap "127.0.0.1:$KAFKA_SECURE_ADMIN_PORT" --admin-config "$SECURE_DIR/kafka/admin.properties" \
    --passwords "$SECURE_DIR/passwords" "${KAFKA_SECURE_USERS[@]}" ||
    die "could not set up the secured broker's users and ACLs"
}

kafka_secure_down() { stop_pidfile "$KAFKA_SECURE_DATA/pid" "secured Kafka"; }
kafka_secure_status() { service_status "secured kafka" "$KAFKA_SECURE_DATA/pid" "$KAFKA_SECURE_PORT" "$KAFKA_SECURE_DATA"; }
kafka_secure_reset() {
  kafka_secure_down
  rm -rf "$KAFKA_SECURE_DATA"
}

mongo_secure_up() {
  already_up "$MONGO_SECURE_PORT" "$MONGO_SECURE_DATA/pid" "secured Mongo server" && return 0
  command -v mongod >/dev/null && log "mongod is on PATH; the secured server is FerretDB all the same"
  FERRETDB_ONLY=1 mongo_install
  secure_pki
  local dir=$MONGO_SECURE_DATA password
  (umask 077 && mkdir -p "$dir/data" "$SECURE_DIR/mongo")
  password=$(secure_secret mongo)
  cp "$SECURE_DIR/passwords/mongo" "$SECURE_DIR/mongo/password"
  echo "mongodb://$MONGO_SECURE_USER@127.0.0.1:$MONGO_SECURE_PORT/?authSource=admin&tls=true&tlsCAFile=$SECURE_DIR/pki/ca.pem" \
    >"$SECURE_DIR/mongo/uri"
  log "starting FerretDB $FERRETDB_VERSION (SQLite) over TLS with authentication on 127.0.0.1:$MONGO_SECURE_PORT (log: $dir/server.log)"
  # No plain listener: --listen-addr is emptied. The set-up account's password comes from the
  # environment, as FerretDB reads it there too.
  FERRETDB_SETUP_PASSWORD=$password setsid "$FERRETDB_HOME/ferretdb" --listen-addr= \
    --listen-tls="127.0.0.1:$MONGO_SECURE_PORT" --listen-tls-cert-file="$SECURE_DIR/pki/server.pem" \
    --listen-tls-key-file="$SECURE_DIR/pki/server.key" --handler=sqlite --sqlite-url="file:$dir/data/" \
    --state-dir="$dir" --debug-addr=- --telemetry=disable --log-level=warn --test-enable-new-auth \
    --setup-database=admin --setup-username="$MONGO_SECURE_USER" >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  wait_until_up "$dir/pid" "$dir/server.log" "secured FerretDB" port_open "$MONGO_SECURE_PORT" 127.0.0.1
}

mongo_secure_down() { stop_pidfile "$MONGO_SECURE_DATA/pid" "secured Mongo server"; }
mongo_secure_status() { service_status "secured mongo" "$MONGO_SECURE_DATA/pid" "$MONGO_SECURE_PORT" "$MONGO_SECURE_DATA"; }
mongo_secure_reset() {
  mongo_secure_down
  rm -rf "$MONGO_SECURE_DATA"
}

spark_secure_ready() {
  grep -q "Spark Connect server started" "$SPARK_SECURE_DATA/server.log" 2>/dev/null &&
    port_open "$SPARK_SECURE_PORT" 127.0.0.1
}

spark_secure_up() {
  already_up "$SPARK_SECURE_PORT" "$SPARK_SECURE_DATA/nginx.pid" "secured Spark Connect server" && return 0
  spark_install
  secure_pki
  apt_install_missing nginx-light
  local dir=$SPARK_SECURE_DATA token
  (umask 077 && mkdir -p "$dir/tmp" "$dir/nginx" "$SECURE_DIR/spark")
  token=$(secure_secret spark-token)
  cp "$SECURE_DIR/passwords/spark-token" "$SECURE_DIR/spark/token"
  log "starting Spark $SPARK_VERSION Connect with a token on 127.0.0.1:$SPARK_SECURE_BACKEND_PORT (log: $dir/server.log)"
  # The token from the environment, as Spark reads it there (never an argument). The JVM trusts
  # the test CA, so the MongoDB connector verifies the secured store.
  SPARK_CONNECT_AUTHENTICATE_TOKEN=$token spark_start iotinfer-spark-connect-secure "$SPARK_SECURE_BACKEND_PORT" "$dir" \
    "-Djavax.net.ssl.trustStore=$SECURE_DIR/pki/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=iotinfer-test-ca"
  # nginx terminates TLS and passes gRPC on (HTTP/2 both ways, ALPN h2 to the client).
  cat >"$dir/nginx/nginx.conf" <<EOF
pid $dir/nginx.pid;
error_log $dir/nginx/error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  server {
    listen 127.0.0.1:$SPARK_SECURE_PORT ssl http2;
    ssl_certificate $SECURE_DIR/pki/server.pem;
    ssl_certificate_key $SECURE_DIR/pki/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # Results stream for as long as a query runs; reattachable executions reconnect anyway.
    grpc_read_timeout 1h;
    grpc_send_timeout 1h;
    client_max_body_size 0;
    location / { grpc_pass grpc://127.0.0.1:$SPARK_SECURE_BACKEND_PORT; }
  }
}
EOF
  nginx -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" || die "nginx did not start (log: $dir/nginx/error.log)"
  wait_until_up "$dir/pid" "$dir/server.log" "secured Spark Connect server" spark_secure_ready
}

spark_secure_down() {
  stop_pidfile "$SPARK_SECURE_DATA/nginx.pid" "Spark Connect's TLS proxy"
  stop_pidfile "$SPARK_SECURE_DATA/pid" "secured Spark Connect server"
}
spark_secure_status() { service_status "secured spark" "$SPARK_SECURE_DATA/pid" "$SPARK_SECURE_PORT" "$SPARK_SECURE_DATA"; }
spark_secure_reset() {
  spark_secure_down
  rm -rf "$SPARK_SECURE_DATA"
}
