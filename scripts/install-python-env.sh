#!/usr/bin/env bash
# Creates (or brings up to date) the Python virtual environment of the uniffi binding's tests and
# benchmark in a cache folder outside the clone, with the packages pinned by
# bindings-uniffi/tests/python/requirements.txt, and prints the path of its python. The ws_daemon
# package itself is installed into it by bindings-uniffi/test.sh (it changes with the code).
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=bindings-uniffi/tests/python/requirements.txt
lock_sum="$(sha256sum "$requirements" | cut -c1-12)"
root="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/tools/python-venv"
python="$root/bin/python"
if [ ! -x "$python" ] || [ "$(cat "$root/.installed" 2>/dev/null)" != "$lock_sum" ]; then
  echo "==> installing the Python test environment into $root" >&2
  rm -rf "$root"
  python3 -m venv "$root" >&2
  "$python" -m pip install --quiet --no-input -r "$requirements" >&2
  echo "$lock_sum" >"$root/.installed"
fi
echo "$python"
