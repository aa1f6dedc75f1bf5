#!/usr/bin/env bash
# Installs the Azure Blob Storage emulator Azurite (pinned by tests/azurite/package-lock.json) into
# a cache folder outside the clone, once, and prints the path of its azurite-blob command.
set -euo pipefail
cd "$(dirname "$0")/.."

lock_sum="$(sha256sum tests/azurite/package-lock.json | cut -c1-12)"
root="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/tools/azurite-$lock_sum"
bin="$root/node_modules/.bin/azurite-blob"
if [ ! -x "$bin" ]; then
  echo "==> installing azurite into $root" >&2
  mkdir -p "$root"
  cp tests/azurite/package.json tests/azurite/package-lock.json "$root/"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$bin"
