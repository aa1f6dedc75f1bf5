#!/usr/bin/env bash
# Regenerates the Go code of the protocol (messages and gRPC stubs) under api/ from proto/protos.
# The .proto files have no go_package option and must not get one: the import paths are given to
# protoc with M mappings instead. Tools: protoc (Debian: apt-get install -y protobuf-compiler),
# protoc-gen-go and protoc-gen-go-grpc at pinned versions, installed with `go install` into a cache
# folder outside the repository (WSD_GO_TOOLS, default ${XDG_CACHE_HOME:-$HOME/.cache}/wsd-go-tools).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
protos=$(cd ../../proto/protos && pwd)

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
MODULE=wsdaemon.dev/wsd

tools="${WSD_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/wsd-go-tools}/bin"
mkdir -p "$tools"
if ! command -v protoc >/dev/null; then
  echo "protoc is missing: apt-get install -y protobuf-compiler" >&2
  exit 1
fi
# Reinstall when the pinned version changed (go install is a no-op when up to date).
GOBIN="$tools" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
GOBIN="$tools" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
export PATH="$tools:$PATH"

# file -> Go package (import path) mappings, used for both plugins: every .proto file of the
# contract, in the Go package named after its folder (the proto package).
declare -A pkg=()
while IFS= read -r f; do
  pkg[$f]="$MODULE/api/$(dirname "$f")"
done < <(cd "$protos" && find . -name '*.proto' | sed 's|^\./||' | sort)
go_opts=() grpc_opts=()
for f in "${!pkg[@]}"; do
  go_opts+=("--go_opt=M$f=${pkg[$f]}")
  grpc_opts+=("--go-grpc_opt=M$f=${pkg[$f]}")
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc -I "$protos" \
  --go_out="$out" --go_opt=module=$MODULE "${go_opts[@]}" \
  --go-grpc_out="$out" --go-grpc_opt=module=$MODULE "${grpc_opts[@]}" \
  "${!pkg[@]}"

rm -rf "$here/api"
cp -r "$out/api" "$here/api"
echo "generated:"; (cd "$here" && find api -name '*.go' | sort)
