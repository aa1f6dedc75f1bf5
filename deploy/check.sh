#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster (deploy/check.py says what): renders each
# kustomization, validates it against the Kubernetes schemas, runs `ws-daemon --print-config` on
# the ConfigMap's config and checks that ports, keys and host paths agree. Run by
# scripts/test-all.sh; alone:
#   WSD_BIN=path/to/ws-daemon deploy/check.sh
# WSD_BIN defaults to the debug build in $CARGO_TARGET_DIR (cargo build --bin ws-daemon first).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
bin="${WSD_BIN:-$target/debug/ws-daemon}"
if [ ! -x "$bin" ]; then
  echo "deploy/check.sh: no ws-daemon binary at $bin: build it (cargo build --bin ws-daemon) or set WSD_BIN" >&2
  exit 1
fi
python="$(scripts/install-kubernetes-validate.sh)"
kustomize="$(scripts/install-kustomize.sh)"

# The base first: check.py also breaks it on purpose to see each check fail.
exec "$python" deploy/check.py --kustomize "$kustomize" --ws-daemon "$bin" \
  deploy/kubernetes deploy/examples/*/
