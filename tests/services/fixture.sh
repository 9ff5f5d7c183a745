#!/usr/bin/env bash
# ctest fixture for a local server: `fixture.sh up NAME STATE_DIR` starts it unless it is
# already running; `fixture.sh down NAME STATE_DIR` stops it only if `up` started it, so a
# developer's running server survives a test run.
set -euo pipefail
action=$1 name=$2 state="$3/fixture-$2-started"
dev="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dev"
case "$action" in
  up)
    rm -f "$state"
    if ! "$dev" services status "$name" >/dev/null; then
      "$dev" services up "$name"
      touch "$state"
    fi
    ;;
  down)
    if [[ -f "$state" ]]; then
      "$dev" services down "$name"
      rm -f "$state"
    fi
    ;;
esac
