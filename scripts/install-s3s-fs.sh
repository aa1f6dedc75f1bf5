#!/usr/bin/env bash
# Installs the S3-compatible test server s3s-fs (pinned; it builds with the pinned toolchain) into a
# cache folder outside the clone, once, and prints the path of its binary.
set -euo pipefail

version=0.14.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon"
root="$cache/tools/s3s-fs-$version"
bin="$root/bin/s3s-fs"
if [ ! -x "$bin" ]; then
  echo "==> installing s3s-fs $version into $root" >&2
  cargo install --locked --quiet "s3s-fs@$version" --features binary \
    --root "$root" --target-dir "$cache/tools-target" >&2
fi
echo "$bin"
