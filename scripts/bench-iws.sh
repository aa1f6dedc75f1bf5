#!/usr/bin/env bash
# In-workspace service benchmark (BENCHMARKS.md): builds release binaries and runs the bench as
# root (it starts a workspace container). Arguments go to the bench, e.g. --clients 5 --pairs 500.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin iws-client --bin bench-iws
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-iws" "$@"
