#!/usr/bin/env bash
# Chunked backups against full archives and restic (issue 15, BENCHMARKS.md): builds release
# binaries, installs restic from the distribution's packages if missing, and runs the bench as root.
# Arguments go to the bench, e.g. --size-mib 1024 --rounds 3 --mutate 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
if ! command -v restic >/dev/null; then
    apt-get install -y restic >/dev/null
fi
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin bench-chunked
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-chunked" "$@"
