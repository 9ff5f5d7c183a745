#!/usr/bin/env bash
# ctest fixture for a local server: `fixture.sh up NAME STATE_DIR` starts it unless it is
# already running; `fixture.sh down NAME STATE_DIR` stops it only if `up` started it, so a
# developer's running server survives a test run.
#
# A Kafka or Mongo server the fixture starts keeps its data in STATE_DIR, from empty, and the
# data goes when it stops: every test makes topics and databases of its own, which piled up
# in a checkout's .cache (5,000 partitions and GBs after some days), slowing the broker.
set -euo pipefail
action=$1 name=$2 state="$3/fixture-$2-started"
dev="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dev"
data=""
case "$name" in
  kafka) data="$3/fixture-kafka-data" && export IOTINFER_KAFKA_DATA="$data" ;;
  mongo) data="$3/fixture-mongo-data" && export IOTINFER_MONGO_DATA="$data" ;;
esac
case "$action" in
  up)
    rm -f "$state"
    if ! "$dev" services status "$name" >/dev/null; then
      [[ -z "$data" ]] || rm -rf "$data"
      "$dev" services up "$name"
      touch "$state"
    fi
    ;;
  down)
    if [[ -f "$state" ]]; then
      "$dev" services down "$name"
      [[ -z "$data" ]] || rm -rf "$data"
      rm -f "$state"
    fi
    ;;
esac
