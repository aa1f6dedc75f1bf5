#!/usr/bin/env bash
# Prints a command that renders a kustomization: `kubectl kustomize` where kubectl is installed,
# else kustomize (pinned), installed from the Go module proxy into a cache folder outside the
# clone, once.
set -euo pipefail

if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  echo "kubectl kustomize"
  exit 0
fi
version=v5.7.1
root="${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/tools/kustomize-$version"
bin="$root/kustomize"
if [ ! -x "$bin" ]; then
  echo "==> installing kustomize $version into $root" >&2
  GOBIN="$root" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
fi
echo "$bin build"
