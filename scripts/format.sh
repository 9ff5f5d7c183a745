#!/usr/bin/env bash
# The repository's C++ in the style of its .clang-format, by Debian's clang-format.
#   scripts/format.sh          rewrite every file that is off it (./dev format)
#   scripts/format.sh --check  list the files that are off it and fail (the format test)
# Only files git tracks (and untracked ones it does not ignore) count: build trees and fetched
# sources are never touched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
if ! command -v "$CLANG_FORMAT" >/dev/null; then
  echo "format: $CLANG_FORMAT is not installed (./dev setup installs Debian's)" >&2
  exit 2
fi

mapfile -t files < <(git -C "$ROOT" ls-files --cached --others --exclude-standard -- '*.cc' '*.h' |
  while read -r file; do [[ -f "$ROOT/$file" ]] && echo "$file"; done)
cd "$ROOT"

if [[ ${1:-} == --check ]]; then
  off=()
  for file in "${files[@]}"; do
    "$CLANG_FORMAT" --style=file --dry-run --Werror "$file" >/dev/null 2>&1 || off+=("$file")
  done
  if ((${#off[@]})); then
    echo "format: ${#off[@]} of ${#files[@]} files are not formatted as .clang-format says ($("$CLANG_FORMAT" --version | head -1)):" >&2
    printf '  %s\n' "${off[@]}" >&2
    echo "run ./dev format, or git clang-format for the lines you changed" >&2
    exit 1
  fi
  echo "format: all ${#files[@]} C++ files as .clang-format says"
  exit 0
fi

printf '%s\0' "${files[@]}" | xargs -0 "$CLANG_FORMAT" --style=file -i
echo "format: ${#files[@]} C++ files formatted"
