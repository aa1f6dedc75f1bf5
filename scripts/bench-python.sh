#!/usr/bin/env bash
# Python in-process benchmark (BENCHMARKS.md, issue 14): builds the release ws-daemon server,
# installs the ws_daemon package (a release build) into the test environment of
# scripts/install-python-env.sh, then runs bindings-uniffi/bench/bench_grpc.py. Argument: calls
# per in-process path (default 20000; at most 5000 over gRPC). bindings-uniffi/test.sh puts the
# debug build back into the environment when it runs next.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p ws-daemon
python="$(scripts/install-python-env.sh)"
export PATH="$(dirname "$python"):$PATH"
"$python" -m pip install --quiet --no-input --no-cache-dir --no-build-isolation --force-reinstall \
  --no-deps ./bindings-uniffi
WSD_BIN="$CARGO_TARGET_DIR/release/ws-daemon" "$python" bindings-uniffi/bench/bench_grpc.py "${1:-20000}"
