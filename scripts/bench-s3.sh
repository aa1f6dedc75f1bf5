#!/usr/bin/env bash
# S3 backup/restore benchmark (BENCHMARKS.md): installs s3s-fs and the aws CLI when missing, builds
# release binaries and runs the bench as root. Arguments go to the bench, e.g. --size-mib 1024.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
WSD_S3S_FS="$(scripts/install-s3s-fs.sh)"
export WSD_S3S_FS
command -v aws >/dev/null || python3 -m pip install --quiet awscli
cargo build --release --locked -p ws-daemon -p wsd-tests --bin ws-daemon --bin bench-s3
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$CARGO_TARGET_DIR/release/bench-s3" "$@"
