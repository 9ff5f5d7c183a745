#!/usr/bin/env bash
# Prints the host's Debian apt source files, one per line, so that a root made with mmdebstrap
# (./dev fresh-check, ./dev image) sees the same archive and security updates as the host.
# Exits 2 when there are none.
set -euo pipefail
found=0
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  if [[ -f $file ]] && grep -qs "debian-archive-keyring\|^deb .*debian" "$file"; then
    echo "$file"
    found=1
  fi
done
((found)) || { echo "debian-sources.sh: no Debian sources in /etc/apt on this host" >&2; exit 2; }
