#!/usr/bin/env bash
# Tests the Go binding against a libwsd build folder. The caller builds first, e.g.
#   CARGO_TARGET_DIR=... cargo build -p wsd-c -p ws-daemon
# Env: CARGO_TARGET_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target),
#      WSD_PROFILE (debug|release, default debug), WSD_BIN (default the server of that build).
# Runs go vet, go test, then go test again with a GC forced at nearly every allocation
# (GOGC=1) and strict pointer checks, to catch cgo lifetime bugs. Prints go test's own output.
set -euo pipefail
cd "$(dirname "$0")"

target="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
libdir="$target/${WSD_PROFILE:-debug}"
if [ ! -f "$libdir/libwsd.so" ]; then
  echo "test.sh: $libdir/libwsd.so is missing; build first: cargo build -p wsd-c -p ws-daemon" >&2
  exit 1
fi
export WSD_BIN="${WSD_BIN:-$libdir/ws-daemon}"
if [ ! -x "$WSD_BIN" ]; then
  echo "test.sh: the server binary $WSD_BIN is missing (build -p ws-daemon too)" >&2
  exit 1
fi
if ! command -v pkg-config >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y pkg-config >/dev/null || { apt-get update >/dev/null && apt-get install -y pkg-config >/dev/null; }
  else
    echo "test.sh: pkg-config is missing (apt-get install -y pkg-config)" >&2
    exit 1
  fi
fi

pcdir=$(mktemp -d)
trap 'rm -rf "$pcdir"' EXIT
bash ../../scripts/install-c.sh --pc-only "$pcdir" "$libdir"
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_ENABLED=1

go vet ./...
rc=0
echo "== go test (normal)"
go test -v -count=1 -timeout 300s ./... || rc=1
echo "== go test (GOEXPERIMENT=cgocheck2, GOGC=1)"
# cgocheck2 checks every pointer write into C-visible memory; -exec sets GOGC=1 (a collection at
# nearly every allocation) for the test binaries only, not for the compiler.
GOEXPERIMENT=cgocheck2 go test -count=1 -timeout 600s -exec "env GOGC=1" ./... || rc=1
exit $rc
