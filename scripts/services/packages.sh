#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are not installed yet (one apt-get run, or none).
# Usage: scripts/services/packages.sh PKG...   Runs as root (or with sudo) on Debian 12.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
for pkg in "$@"; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then missing+=("$pkg"); fi
done
[ "${#missing[@]}" -gt 0 ] || exit 0
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
echo "packages.sh: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
