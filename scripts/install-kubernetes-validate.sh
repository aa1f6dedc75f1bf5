#!/usr/bin/env bash
# Installs kubernetes-validate (the Kubernetes schemas, offline) and PyYAML, pinned by
# deploy/requirements.txt, into a Python virtual environment in a cache folder outside the clone,
# once, and prints the path of its python.
set -euo pipefail
cd "$(dirname "$0")/.."

lock_sum="$(sha256sum deploy/requirements.txt | cut -c1-12)"
root="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/tools/kubernetes-validate-$lock_sum"
python="$root/bin/python"
if [ ! -x "$python" ] || [ ! -e "$root/.installed" ]; then
  echo "==> installing kubernetes-validate into $root" >&2
  rm -rf "$root"
  python3 -m venv "$root" >&2
  "$python" -m pip install --quiet --no-input -r deploy/requirements.txt >&2
  touch "$root/.installed"
fi
echo "$python"
