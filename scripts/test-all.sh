#!/usr/bin/env bash
# Runs every test of ws-daemon, installing what is missing on a fresh Debian machine first.
# Used by the README and by .ci/run. Build output goes to a cache folder outside the clone
# (CARGO_TARGET_DIR) so that repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v make >/dev/null || need_apt+=(make)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v nm >/dev/null || need_apt+=(binutils)
command -v pgrep >/dev/null || need_apt+=(procps)
command -v unshare >/dev/null || need_apt+=(util-linux)
# SetupPairVeths writes its NAT rules with nft; its tests wire namespaces with ip.
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
# deploy/check.sh validates the Kubernetes manifests with Python packages in a virtual environment.
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3 python3-venv)
# Storage quota tests: btrfs on a loop device for real; XFS where the kernel has project quotas.
command -v mkfs.btrfs >/dev/null || need_apt+=(btrfs-progs)
command -v mkfs.xfs >/dev/null || need_apt+=(xfsprogs)
# Containerd discovery is tested against a real containerd (runc runs its containers).
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
# The real NFS test runs only where the kernel has an NFS client; it needs a server then.
if grep -q 'nfs4$' /proc/filesystems && ! command -v ganesha.nfsd >/dev/null; then
  need_apt+=(nfs-ganesha nfs-ganesha-vfs)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo is missing: install Rust 1.85 or newer with rustup (https://rustup.rs) and run again" >&2
    exit 1
  fi
fi
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  log "installing clippy and rustfmt"
  rustup component add clippy rustfmt
fi

log "object store test servers (s3s-fs, Azurite, fake-gcs-server; installed once into the cache)"
if ! command -v go >/dev/null; then
  echo "go is missing: install Go 1.26 or newer (the grpc module requires it) and run again" >&2
  exit 1
fi
WSD_S3S_FS="$(scripts/install-s3s-fs.sh)"
WSD_AZURITE="$(scripts/install-azurite.sh)"
WSD_FAKE_GCS="$(scripts/install-fake-gcs-server.sh)"
export WSD_S3S_FS WSD_AZURITE WSD_FAKE_GCS

log "format"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build (the integration tests run the ws-daemon binary)"
cargo build --workspace --all-targets --locked

log "tests"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$results"
log "node addon (napi-rs): install, build, generated loader unchanged, node --test"
(
  cd bindings-node
  npm ci --no-audit --no-fund --loglevel=error
  npx napi build --platform
  if ! git diff --quiet -- index.js index.d.ts; then
    echo "bindings-node/index.js or index.d.ts changed when generated: commit the regenerated files" >&2
    exit 1
  fi
  WSD_BIN="$CARGO_TARGET_DIR/debug/ws-daemon" node --test test/*.test.mjs
) 2>&1 | tee -a "$results"

log "go binding (cgo): vet, go test, go test under GOGC=1"
bash bindings-c/go/test.sh 2>&1 | tee -a "$results"

log "python binding (uniffi): venv, install, pytest"
bash bindings-uniffi/test.sh 2>&1 | tee -a "$results"

log "deployment: Kubernetes manifests rendered, validated against the schemas, agreeing with the config"
WSD_BIN="$CARGO_TARGET_DIR/debug/ws-daemon" bash deploy/check.sh 2>&1 | tee -a "$results"

# One closing line over every test binary of the run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^# pass / { p += $3 } /^# fail / { f += $3 }
     /^--- PASS/ { p++ } /^--- FAIL/ { f++ }
     /^=+ .* in [0-9.]+s( \([0-9:.]+\))? =+$/ { for (i = 3; i < NF; i++) { if ($i ~ /^passed,?$/) p += $(i-1); if ($i ~ /^(failed|errors?),?$/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$results"
