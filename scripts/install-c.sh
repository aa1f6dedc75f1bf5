#!/usr/bin/env bash
# Builds libwsd (release) and installs it with its header and pkg-config file under PREFIX
# (default /usr/local): PREFIX/lib/libwsd.{so,a}, PREFIX/include/wsd.h, PREFIX/lib/pkgconfig/wsd.pc.
# With --pc-only DIR LIBDIR it only writes DIR/wsd.pc pointing at LIBDIR and the repository's
# include/ (what the tests use against a build folder).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

write_pc() { # dir prefix libdir includedir
  mkdir -p "$1"
  sed -e "s|@PREFIX@|$2|" -e "s|@LIBDIR@|$3|" -e "s|@INCLUDEDIR@|$4|" -e "s|@VERSION@|$version|" \
    bindings-c/wsd.pc.in > "$1/wsd.pc"
}

if [ "${1:-}" = "--pc-only" ]; then
  write_pc "$2" "$3" "$3" "$(pwd)/include"
  exit 0
fi

prefix="${1:-/usr/local}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-daemon/target}"
cargo build --release --locked -p wsd-c
install -d "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0755 "$CARGO_TARGET_DIR/release/libwsd.so" "$prefix/lib/"
install -m 0644 "$CARGO_TARGET_DIR/release/libwsd.a" "$prefix/lib/"
install -m 0644 include/wsd.h "$prefix/include/"
write_pc "$prefix/lib/pkgconfig" "$prefix" "$prefix/lib" "$prefix/include"
echo "installed libwsd $version under $prefix (pkg-config --cflags --libs wsd)"
