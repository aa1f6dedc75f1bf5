#!/usr/bin/env bash
# In-process latency benchmark (BENCHMARKS.md, issue 3): IsWorkspaceExists from C (typed and
# protobuf call), from Go in-process (blocking path and generated client over ClientConn), and from
# Go over gRPC to the ws-daemon server (unix socket and TCP), in one run, release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p wsd-c -p ws-daemon
rel="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -Wall -Wextra -Werror -Iinclude bindings-c/bench/wsd_bench.c -o "$work/wsd_bench" \
  -L"$rel" -Wl,-rpath,"$rel" -lwsd
echo "| path | median µs | p99 µs | calls/s (sequential) |"
echo "|---|---|---|---|"
mkdir -p "$work/c"
"$work/wsd_bench" "$work/c" "${CALLS:-200000}"
bash scripts/install-c.sh --pc-only "$work/pc" "$rel"
cd bindings-c/go
PKG_CONFIG_PATH="$work/pc" WSD_BIN="$rel/ws-daemon" go run -a ./cmd/wsd-bench
