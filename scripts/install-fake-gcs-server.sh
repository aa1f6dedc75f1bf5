#!/usr/bin/env bash
# Installs the Google Cloud Storage emulator fake-gcs-server (pinned) from the Go module proxy into
# a cache folder outside the clone, once, and prints the path of its binary.
set -euo pipefail

version=v1.56.1
root="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/tools/fake-gcs-server-$version"
bin="$root/fake-gcs-server"
if [ ! -x "$bin" ]; then
  echo "==> installing fake-gcs-server $version into $root" >&2
  GOBIN="$root" GOFLAGS=-mod=mod go install "github.com/fsouza/fake-gcs-server@$version" >&2
fi
echo "$bin"
