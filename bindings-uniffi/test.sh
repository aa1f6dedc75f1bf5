#!/usr/bin/env bash
# The Python binding's tests: creates the virtual environment (scripts/install-python-env.sh),
# builds and installs the ws_daemon package into it with the dev profile (so it reuses the debug
# build of the cargo target folder), then runs pytest. Run by scripts/test-all.sh; alone:
#   bash bindings-uniffi/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
# What the tests run besides the package: the bindings generator and the library it reads, the
# in-workspace client, the S3 test server (each a no-op when up to date or installed).
cargo build --locked --quiet -p wsd-uniffi --lib --bin uniffi-bindgen
cargo build --locked --quiet -p wsd-tests --bin iws-client
WSD_S3S_FS="${WSD_S3S_FS:-$(scripts/install-s3s-fs.sh)}"
export WSD_S3S_FS
python="$(scripts/install-python-env.sh)"
# The build backend runs the environment's maturin by name.
export PATH="$(dirname "$python"):$PATH"
MATURIN_PEP517_ARGS="--profile dev" "$python" -m pip install --quiet --no-input --no-cache-dir \
  --no-build-isolation --force-reinstall --no-deps ./bindings-uniffi
cd bindings-uniffi/tests/python
exec "$python" -m pytest -p no:cacheprovider -v "$@"
