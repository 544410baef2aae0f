#!/usr/bin/env bash
# Builds the offline Kubernetes manifest checks from Go modules into the cache
# (${TELEMETRY_GATEWAY_CACHE:-~/.cache/telemetry-gateway}/k8s-tools), and prints their paths:
#   kustomize   sigs.k8s.io/kustomize/kustomize/v5 at KUSTOMIZE_VERSION
#   validate    deploy/kubernetes/validate: strict decoding into the Kubernetes API's Go types
#   scripts/build-k8s-tools.sh --path kustomize|validate   where a binary is, no build
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${TELEMETRY_GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/telemetry-gateway}/k8s-tools
KUSTOMIZE_VERSION=v5.8.1
src="$repo/deploy/kubernetes/validate"
key=$(cat "$src/main.go" "$src/go.mod" "$0" | sha256sum | cut -c1-16)
kustomize="$cache/kustomize-$KUSTOMIZE_VERSION/kustomize"
validate="$cache/validate-$key/validate"
if [ "${1:-}" = "--path" ]; then
  case "${2:-}" in
    kustomize) echo "$kustomize" ;;
    validate) echo "$validate" ;;
    *) echo "usage: build-k8s-tools.sh --path kustomize|validate" >&2; exit 2 ;;
  esac
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "error: the Go toolchain is needed" >&2; exit 1; }
mkdir -p "$cache"
if [ ! -x "$kustomize" ]; then
  echo "building kustomize $KUSTOMIZE_VERSION" >&2
  GOBIN="$(dirname "$kustomize")" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
fi
if [ ! -x "$validate" ]; then
  echo "building the manifest validator" >&2
  work=$(mktemp -d "$cache/build.XXXXXX")
  cp "$src/main.go" "$src/go.mod" "$work/"
  (cd "$work" && go mod tidy >&2 && go build -o "$work/validate" .)
  mkdir -p "$(dirname "$validate")"
  mv "$work/validate" "$validate"
  rm -rf "$work"
fi
echo "$kustomize"
echo "$validate"
