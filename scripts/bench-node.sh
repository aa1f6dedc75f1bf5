#!/usr/bin/env bash
# Node in-process benchmark (BENCHMARKS.md, issue 4): builds the release addon and the release
# ws-daemon server, then runs bindings-node/bench/bench.mjs. Argument: calls per path (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p ws-daemon
cd bindings-node
npm ci --no-audit --no-fund --loglevel=error
npx napi build --platform --release
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" node bench/bench.mjs "${1:-20000}"
