#!/usr/bin/env bash
# ./dev fresh-check: the README's first two commands, `./dev demo` then `./dev test`, run as the
# first commands on a new Debian bookworm machine: a minimal root made by mmdebstrap from
# Debian's packages, holding a clean clone of HEAD, entered with chroot in mount and pid
# namespaces of its own (so that its mounts and every process it starts end with it, on any
# exit path) and the host's network. Nothing of the host's /usr/local, $HOME, PATH, packages or
# IOTINFER_* variables is visible inside.
#
# Only download caches are kept between runs, outside the root, in $FRESH_CACHE: apt's .deb
# files, Go's module downloads, Maven's repository and pip's cache. They never hold installed
# state: every run installs and builds everything again.
#
#   ./dev fresh-check [--only demo|test] [--keep] [--ref REF]
#     --only   run just one of the two commands (both by default, demo first)
#     --keep   leave the root in place afterwards (its path is printed)
#     --ref    what to clone (default HEAD); a branch or commit of this repository
#
# Prints each command's exit code and wall time, and the last lines of a failure; exits non-zero
# if either fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARTIFACTS="${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer"
FRESH_CACHE="${IOTINFER_FRESH_CACHE:-$ARTIFACTS/fresh-check-cache}"
WORK_PARENT="${IOTINFER_FRESH_WORK:-/var/tmp}"
SUITE=bookworm
# The servers the suite starts listen on these host ports; ones already taken would be used by
# the fixtures inside instead of servers of the root's own.
SERVER_PORTS=(9092 27017 27019 15002)
TAIL_LINES=40

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'fresh-check: %s\n' "$*" >&2; exit 2; }

only="" keep=0 ref=HEAD
while (($#)); do
  case "$1" in
    --only) only=${2:-}; shift 2 || die "--only needs demo or test" ;;
    --keep) keep=1; shift ;;
    --ref) ref=${2:-}; shift 2 || die "--ref needs a branch or commit" ;;
    *) die "unknown argument '$1' (usage: ./dev fresh-check [--only demo|test] [--keep] [--ref REF])" ;;
  esac
done
case "$only" in
  "") commands=(demo test) ;;
  demo | test) commands=("$only") ;;
  *) die "--only takes demo or test, not '$only'" ;;
esac

[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap, chroot and mounts)"
commit=$(git -C "$ROOT" rev-parse --verify "$ref^{commit}") || die "no commit '$ref' in $ROOT"
for port in "${SERVER_PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken on this host; stop that server first (./dev services down), or the root's tests would use it"
  fi
done

if ! command -v mmdebstrap >/dev/null; then
  log "installing mmdebstrap (Debian's package) on the host"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
fi

# The host's Debian sources, so that the root sees the same archive (and security updates) as
# a new machine here would.
sources_list=$("$ROOT/scripts/debian-sources.sh") || die "no Debian sources in /etc/apt on this host"
mapfile -t sources <<<"$sources_list"

mkdir -p "$FRESH_CACHE"/{apt,go,m2,pip} "$WORK_PARENT"
# Maven records a failed download as *.lastUpdated and does not try again for a day: a failure
# to reach the network is not a download to keep.
find "$FRESH_CACHE/m2" -name '*.lastUpdated' -delete
work=$(mktemp -d "$WORK_PARENT/iotinfer-fresh.XXXXXX")
root="$work/root"
logdir="$work/logs"
mkdir -p "$logdir"
inner_pid=""

# True once no process has its root directory inside $root.
# shellcheck disable=SC2317 # called from cleanup, which the EXIT trap calls
root_unused() {
  local link
  for link in /proc/[0-9]*/root; do
    [[ "$(readlink "$link" 2>/dev/null)" == "$root"* ]] && return 1
  done
  return 0
}

# shellcheck disable=SC2317 # the EXIT trap calls it
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $inner_pid ]] && kill -0 "$inner_pid" 2>/dev/null; then
    # unshare --fork ignores SIGINT and SIGTERM while it waits for its child; killed, it takes
    # the child (--kill-child), the pid namespace's first process, and so every process inside.
    kill -KILL "$inner_pid" 2>/dev/null || true
    wait "$inner_pid" 2>/dev/null || true
  fi
  local i
  for ((i = 0; i < 100; i++)); do root_unused && break; sleep 0.1; done
  # The mounts live in the inner mount namespace and are gone with it; never delete through one.
  if grep -qF " $root" /proc/self/mounts || ! root_unused; then
    printf 'fresh-check: %s is still in use; left in place\n' "$root" >&2
  elif ((keep)); then
    printf 'fresh-check: the root is kept at %s (logs in %s)\n' "$root" "$logdir" >&2
  else
    # Go's module cache inside is read-only by design.
    chmod -R u+w "$root" 2>/dev/null || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
log "making a minimal Debian $SUITE root in $root (mmdebstrap)"
# Debian's .deb files go through the apt cache both ways; the root's own apt runs reuse them
# through a bind mount below.
# shellcheck disable=SC2016 # "$1" is the hook's: mmdebstrap passes it the root
mmdebstrap --quiet --variant=minbase --mode=root \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
  --setup-hook="sync-in $FRESH_CACHE/apt /var/cache/apt/archives" \
  --customize-hook="sync-out /var/cache/apt/archives $FRESH_CACHE/apt" \
  "$SUITE" "$root" "${sources[@]}" >"$logdir/mmdebstrap.log" 2>&1 ||
  { tail -n "$TAIL_LINES" "$logdir/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
# A machine's own network settings, as a new one on this network would have: its resolver, and
# the network's own CA certificates (the host's local ones; where TLS is inspected on the way
# out, no TLS connection succeeds without them). Debian's ca-certificates, which ./dev installs,
# adds them to the system's store.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/hosts "$root/etc/hosts"
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
root_time=$((SECONDS - started))
log "root made in ${root_time}s ($(du -sh "$root" | cut -f1))"

log "cloning $commit into the root"
git clone --quiet --no-hardlinks "$ROOT" "$root/root/iotinfer"
git -C "$root/root/iotinfer" checkout --quiet --detach "$commit"

# Runs one command inside the root; its output goes to $logdir/NAME.log and to the terminal.
run_inside() {
  local name=$1 script=$2
  # --fork --pid: the command is pid 1 of its namespace, and all it starts (the servers too)
  # dies with it. --kill-child: and it is killed when unshare dies (SIGKILL: pid 1 of a
  # namespace ignores other signals it has no handler for). Mounts made inside are private.
  # shellcheck disable=SC2016 # the inner script's variables are its own
  unshare --mount --pid --fork --kill-child --propagation private \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -euo pipefail -c '
      root=$1 cache=$2 script=$3
      mount -t proc proc "$root/proc"
      mount --rbind /sys "$root/sys"
      mount --rbind /dev "$root/dev"
      # A /dev/shm of its own: the host'"'"'s holds other programs'"'"' segments.
      mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
      mkdir -p "$root/var/cache/apt/archives" "$root/root/go/pkg/mod/cache/download" \
        "$root/root/.m2/repository" "$root/root/.cache/pip"
      mount --bind "$cache/apt" "$root/var/cache/apt/archives"
      mount --bind "$cache/go" "$root/root/go/pkg/mod/cache/download"
      mount --bind "$cache/m2" "$root/root/.m2/repository"
      mount --bind "$cache/pip" "$root/root/.cache/pip"
      exec chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/iotinfer && $script"
    ' fresh-check "$root" "$FRESH_CACHE" "$script" </dev/null > >(tee "$logdir/$name.log") 2>&1 &
  inner_pid=$!
  wait "$inner_pid"
}

declare -A rc_of=() time_of=()
failed=0
for name in "${commands[@]}"; do
  log "running ./dev $name inside the root"
  t0=$SECONDS
  rc=0
  run_inside "$name" "./dev $name" || rc=$?
  inner_pid=""
  rc_of[$name]=$rc
  time_of[$name]=$((SECONDS - t0))
  if ((rc != 0)); then
    failed=1
    printf '\n---- last %d lines of ./dev %s ----\n' "$TAIL_LINES" "$name" >&2
    tail -n "$TAIL_LINES" "$logdir/$name.log" >&2
    # ./dev test after a failed demo would only repeat its failure.
    break
  fi
done

printf '\nfresh-check of %s on Debian %s (root made in %ds):\n' "${commit:0:12}" "$SUITE" "$root_time"
for name in "${commands[@]}"; do
  if [[ -n ${rc_of[$name]:-} ]]; then
    printf '  ./dev %-5s exit %d in %dm%02ds\n' "$name" "${rc_of[$name]}" "$((time_of[$name] / 60))" "$((time_of[$name] % 60))"
  else
    printf '  ./dev %-5s not run\n' "$name"
  fi
done
printf '  total %dm%02ds; caches in %s (%s)\n' "$(((SECONDS - started) / 60))" "$(((SECONDS - started) % 60))" \
  "$FRESH_CACHE" "$(du -sh "$FRESH_CACHE" | cut -f1)"
exit "$failed"
