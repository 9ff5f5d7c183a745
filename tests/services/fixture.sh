#!/usr/bin/env bash
# ctest fixture for a local server: `fixture.sh up NAME STATE_DIR` starts it unless it is
# already running; `fixture.sh down NAME STATE_DIR` stops it only if `up` started it, so a
# developer's running server survives a test run.
#
# A Kafka or Mongo server the fixture starts keeps its data in STATE_DIR, from empty, and the
# data goes when it stops: every test makes topics and databases of its own, which piled up
# in a checkout's .cache (5,000 partitions and GBs after some days), slowing the broker.
# NAME-secure is NAME's secured server (./dev services ... --secure); its credentials stay in the
# checkout's .cache/secure, where the tests read them. mongo-postgresql is FerretDB on PostgreSQL,
# on the ports ctest gives it (IOTINFER_MONGO_PORT, IOTINFER_PG_PORT).
set -euo pipefail
action=$1 name=$2 state="$3/fixture-$2-started"
dev="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dev"
data=""
server=("$name")
case "$name" in
  kafka) data="$3/fixture-kafka-data" && export IOTINFER_KAFKA_DATA="$data" ;;
  mongo) data="$3/fixture-mongo-data" && export IOTINFER_MONGO_DATA="$data" ;;
  kafka-secure) data="$3/fixture-kafka-secure-data" && export IOTINFER_KAFKA_SECURE_DATA="$data" ;;
  mongo-secure) data="$3/fixture-mongo-secure-data" && export IOTINFER_MONGO_SECURE_DATA="$data" ;;
  mongo-postgresql)
    # PostgreSQL runs as the postgres user, who cannot reach a build directory in root's home
    # (fresh-check's): its data goes to the temp directory, one per build directory.
    data="${TMPDIR:-/tmp}/iotinfer-fixture-mongo-postgresql-$(printf %s "$3" | sha256sum | cut -c1-12)"
    export IOTINFER_MONGO_DATA="$data"
    server=(mongo --backend postgresql)
    ;;
  spark-secure) data="$3/fixture-spark-secure-data" && export IOTINFER_SPARK_SECURE_DATA="$data" ;;
esac
if [[ $name == *-secure ]]; then server=("${name%-secure}" --secure); fi
case "$action" in
  up)
    rm -f "$state"
    if ! "$dev" services status "${server[@]}" >/dev/null; then
      [[ -z "$data" ]] || rm -rf "$data"
      "$dev" services up "${server[@]}"
      touch "$state"
    fi
    ;;
  down)
    if [[ -f "$state" ]]; then
      "$dev" services down "${server[@]}"
      [[ -z "$data" ]] || rm -rf "$data"
      rm -f "$state"
    fi
    ;;
esac
