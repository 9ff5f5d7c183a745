# ./dev image: the container images, built on this machine with no engine and no registry.
# Sourced by ./dev (log, die, ROOT, ARTIFACTS, apt_install_missing come from there).
#
#   ./dev image [base|iotinfer|spark|all]   (all by default)
#     base      debian:bookworm and debian:bookworm-slim, made from Debian's packages with
#               mmdebstrap, as the base images the Dockerfiles name (nothing can be pulled here)
#     iotinfer  deploy/docker/Dockerfile, built with buildah from the repository root
#     spark     deploy/docker/Dockerfile.spark: Spark Connect with its connectors baked in
#   Each image is also written as an OCI archive under $ARTIFACTS/images/, which
#   `ctr -n k8s.io images import` takes, and the sizes are printed.
#
# buildah keeps its images and layer cache in /var/lib/containers/storage: a second build
# reuses every step whose inputs did not change (--layers).
# shellcheck shell=bash

APT_IMAGE_PACKAGES=(buildah mmdebstrap)
IMAGE_DIR="$ARTIFACTS/images"
IOTINFER_IMAGE=localhost/iotinfer:dev
SPARK_IMAGE=localhost/iotinfer-spark:$SPARK_VERSION

# Docker's slim variant: no manual pages, documentation (copyright files excepted) or
# translations; dpkg skips them for every package installed later too.
SLIM_DPKG_OPTS=(
  path-exclude=/usr/share/doc/*
  path-include=/usr/share/doc/*/copyright
  path-exclude=/usr/share/man/*
  path-exclude=/usr/share/info/*
  path-exclude=/usr/share/locale/*
  path-exclude=/usr/share/groff/*
  path-exclude=/usr/share/lintian/*
  path-exclude=/usr/share/linda/*
)

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# debian:bookworm (or, with slim, debian:bookworm-slim) from Debian's packages: mmdebstrap's
# minbase, as Docker's official images are, with apt's lists and downloads left out.
image_base() {
  local slim=$1 name=docker.io/library/debian:bookworm
  ((slim)) && name+=-slim
  if image_exists "$name"; then
    log "$name is there (buildah rmi $name to make it again)"
    return
  fi
  local -a sources opts=()
  local sources_list
  sources_list=$("$ROOT/scripts/debian-sources.sh") || die "no Debian sources in /etc/apt on this host"
  mapfile -t sources <<<"$sources_list"
  if ((slim)); then
    local opt
    for opt in "${SLIM_DPKG_OPTS[@]}"; do opts+=(--dpkgopt="$opt"); done
  fi
  local tar container
  tar=$(mktemp --suffix=.tar)
  log "making $name with mmdebstrap"
  # shellcheck disable=SC2016 # $1 is the root, for mmdebstrap's hooks
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar "${opts[@]}" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
    bookworm "$tar" "${sources[@]}" || { rm -f "$tar"; die "mmdebstrap failed for $name"; }
  container=$(buildah from scratch)
  buildah add --quiet "$container" "$tar" / >/dev/null
  rm -f "$tar"
  buildah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$container"
  buildah commit --quiet --rm "$container" "$name" >/dev/null
}

# The host's extra CAs (those an administrator added to /usr/local/share/ca-certificates), as one
# PEM bundle for the Dockerfile's optional secret; nothing when there are none.
extra_ca_bundle() {
  local out=$1
  : >"$out"
  compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null || return 0
  cat /usr/local/share/ca-certificates/*.crt >"$out"
}

# Builds Dockerfile $1 (from the repository root) into image $2, and exports it as $3.tar.
image_build() {
  local dockerfile=$1 image=$2 bundle
  bundle=$(mktemp)
  extra_ca_bundle "$bundle"
  local -a secret=()
  [[ -s $bundle ]] && secret=(--secret "id=extra-ca-certificates,src=$bundle")
  log "building $image from ${dockerfile#"$ROOT"/} (buildah)"
  local rc=0
  buildah bud --layers --file "$dockerfile" --ignorefile "$dockerfile.dockerignore" \
    --tag "$image" "${secret[@]}" "$ROOT" || rc=$?
  rm -f "$bundle"
  ((rc == 0)) || die "building $image failed"
  image_export "$image" "$3"
}

# NAME as an OCI archive under $IMAGE_DIR, for `ctr -n k8s.io images import`.
image_export() {
  local image=$1 file="$IMAGE_DIR/$2.tar"
  mkdir -p "$IMAGE_DIR"
  rm -f "$file"
  buildah push --quiet "$image" "oci-archive:$file:$image" >/dev/null
  log "$image written to $file ($(du -h "$file" | cut -f1))"
}

image_sizes() {
  buildah images --format '{{.Name}}:{{.Tag}}  {{.Size}}' |
    grep -E "^(docker.io/library/debian|${IOTINFER_IMAGE%%:*}|${SPARK_IMAGE%%:*}):"
}

cmd_image() {
  local what=${1:-all}
  case "$what" in
    base | iotinfer | spark | all) ;;
    *) die "usage: ./dev image [base|iotinfer|spark|all]" ;;
  esac
  apt_install_missing "${APT_IMAGE_PACKAGES[@]}"
  # Debian's crun cannot create a container on a host whose cgroups are v1 or hybrid ("cgroups
  # in hybrid mode not supported"); buildah's chroot isolation runs the RUN steps without an OCI
  # runtime, in the host's network, which the steps need for apt, pip and Maven anyway.
  export BUILDAH_ISOLATION=chroot
  image_base 0
  image_base 1
  if [[ $what == iotinfer || $what == all ]]; then
    image_build "$ROOT/deploy/docker/Dockerfile" "$IOTINFER_IMAGE" iotinfer
  fi
  if [[ $what == spark || $what == all ]]; then
    image_build "$ROOT/deploy/docker/Dockerfile.spark" "$SPARK_IMAGE" spark
  fi
  image_sizes
}
