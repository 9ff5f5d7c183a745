# The Go toolchain that builds Helm, FerretDB and the chart checker, pinned so that every machine
# builds them with the same compiler. Sourced by scripts/deploy-tools.sh and scripts/services.sh;
# $ARTIFACTS is where downloads live.
#
# Debian bookworm's Go (1.19) is too old for those modules, so go_install takes the pinned
# release from the Go module proxy, as a `golang.org/toolchain` module: the way the go command
# itself fetches toolchains (GOTOOLCHAIN), checked against the checksum database like any module.
# Any go on PATH can fetch it; where there is none, Debian's golang-go does.
# shellcheck shell=bash

: "${ARTIFACTS:=${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer}"

GO_VERSION=1.26.8
GO_HOME="$ARTIFACTS/go-$GO_VERSION"

# Installs the pinned Go into $GO_HOME (idempotent, silent when there) and puts it first on PATH.
go_install() {
  if [[ ! -x "$GO_HOME/bin/go" ]]; then
    go_fetch || return 1
  fi
  go_use
}

# Puts $GO_HOME/bin first on PATH when it is installed; the project's builds then use it.
go_use() {
  [[ -x "$GO_HOME/bin/go" ]] || return 0
  case ":$PATH:" in *":$GO_HOME/bin:"*) ;; *) PATH="$GO_HOME/bin:$PATH" ;; esac
  export PATH
  # A go.mod naming a newer Go must fail, not fetch yet another toolchain behind our back.
  export GOTOOLCHAIN=local
}

go_fetch() {
  local boot
  boot=$(command -v go) || {
    printf '\033[1m==> %s\033[0m\n' "installing Debian's golang-go, to fetch Go $GO_VERSION with it" >&2
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends golang-go ca-certificates
    boot=$(command -v go) || { printf 'go_install: no go after installing golang-go\n' >&2; return 1; }
  }
  printf '\033[1m==> %s\033[0m\n' "fetching Go $GO_VERSION (golang.org/toolchain) into $GO_HOME" >&2
  local module="golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64" tmp dir
  tmp=$(mktemp -d)
  # Outside any module, and with the caller's GOFLAGS (e.g. -mod=vendor) meaning nothing here.
  dir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS='' "$boot" mod download -json "$module" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  rmdir "$tmp"
  [[ -f "$dir/bin/go" ]] || {
    printf 'go_install: could not download %s from the Go module proxy\n' "$module" >&2
    return 1
  }
  rm -rf "$GO_HOME" "$GO_HOME.tmp"
  mkdir -p "$(dirname "$GO_HOME")"
  cp -r "$dir" "$GO_HOME.tmp"
  # Module zips keep no file modes: the module cache holds the tree read-only and not executable.
  chmod -R u+w "$GO_HOME.tmp"
  chmod +x "$GO_HOME.tmp"/bin/* "$GO_HOME.tmp"/pkg/tool/*/*
  mv "$GO_HOME.tmp" "$GO_HOME"
  "$GO_HOME/bin/go" version >/dev/null || { printf 'go_install: %s does not run\n' "$GO_HOME/bin/go" >&2; return 1; }
}
