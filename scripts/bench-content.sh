#!/usr/bin/env bash
# Backup/restore benchmark (BENCHMARKS.md): builds release binaries and runs the bench as root.
# Arguments go to the bench, e.g. --size-mib 1024 --rounds 3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin bench-content
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-content" "$@"
