#!/usr/bin/env bash
# Chunked backups against full archives and restic (issue 15, BENCHMARKS.md): builds release
# binaries, installs restic from the distribution's packages if missing, and runs the bench as root.
# Arguments go to the bench, e.g. --size-mib 1024 --rounds 3 --mutate 1 (--perf records profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
if ! command -v restic >/dev/null; then
    apt-get install -y restic >/dev/null
fi
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin bench-chunked
# The target folder is shared between worktrees: run copies, so that another worktree's build
# cannot replace the daemon while the bench starts it.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cp "$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-chunked" "$bin/"
WSD_BIN="$bin/ws-daemon" "$bin/bench-chunked" "$@"
