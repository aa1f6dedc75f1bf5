#!/usr/bin/env bash
# Git initializer benchmark (BENCHMARKS.md, issue 5): release binaries, run as root for a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin bench-git
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-git" "$@"
