#!/usr/bin/env bash
# Builds the project's OpenTelemetry Collector distributions from Go modules with the Collector
# builder (ocb), into a cache outside the repository, and prints each binary's path.
#
#   scripts/build-collector.sh                 build (when needed) every distribution
#   scripts/build-collector.sh main            only otel-collector/manifest.yaml
#   scripts/build-collector.sh loadbalancer    only otel-collector/manifest-loadbalancer.yaml
#   scripts/build-collector.sh --path NAME     print where NAME's binary is (or would be), no build
#
# A binary is rebuilt only when its manifest (comments aside), the builder version, the Go version
# or this script change: the cache key is a hash of all four. The Go module cache and build cache (go env
# GOMODCACHE / GOCACHE) are the machine's own and are reused across builds. Nothing downloaded
# lands in the repository. The cache root is $TELEMETRY_GATEWAY_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/telemetry-gateway.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${TELEMETRY_GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/telemetry-gateway}/otelcol

manifest_of() {
  case "$1" in
    main) echo "$repo/otel-collector/manifest.yaml" ;;
    loadbalancer) echo "$repo/otel-collector/manifest-loadbalancer.yaml" ;;
    *) echo "unknown Collector distribution '$1' (main, loadbalancer)" >&2; exit 2 ;;
  esac
}

# The builder's release is the core release the manifest pins (its otlpreceiver line): the code
# ocb generates calls the otelcol API of its own release.
builder_version() {
  sed -n 's#.*go.opentelemetry.io/collector/receiver/otlpreceiver \(v[0-9.]*\).*#\1#p' "$1"
}

binary_name() { sed -n 's/^  name: *//p' "$1" | head -1; }

target_dir() {
  local manifest=$1 key
  # Comment lines do not change the binary, so they do not change the key.
  key=$( { grep -v '^[[:space:]]*\(#\|$\)' "$manifest"; cat "$0"; builder_version "$manifest"
    go env GOVERSION; } | sha256sum | cut -c1-16)
  echo "$cache/$(binary_name "$manifest")-$key"
}

build() {
  local manifest=$1 dir bin version work
  dir=$(target_dir "$manifest")
  bin="$dir/$(binary_name "$manifest")"
  if [ -x "$bin" ]; then echo "$bin"; return; fi
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9  # one build at a time per machine; the second one finds the first one's binary
  if [ -x "$bin" ]; then echo "$bin"; exec 9>&-; return; fi
  version=$(builder_version "$manifest")
  local ocb="$cache/ocb-$version/builder"
  if [ ! -x "$ocb" ]; then
    echo "installing the Collector builder $version" >&2
    GOBIN="$cache/ocb-$version" go install "go.opentelemetry.io/collector/cmd/builder@$version" >&2
  fi
  work=$(mktemp -d "$cache/build.XXXXXX")
  sed "s#^  output_path: .*#  output_path: $work/src#" "$manifest" >"$work/manifest.yaml"
  echo "building $(binary_name "$manifest") from $manifest (first build: several minutes)" >&2
  local started=$SECONDS
  if ! "$ocb" --config "$work/manifest.yaml" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    echo "error: the Collector build failed; full log: $work/build.log" >&2
    exit 1
  fi
  mkdir -p "$dir"
  mv "$work/src/$(binary_name "$manifest")" "$bin.tmp"
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
  echo "built $bin in $((SECONDS - started)) s" >&2
  exec 9>&-
  echo "$bin"
}

if [ "${1:-}" = "--path" ]; then
  manifest=$(manifest_of "${2:?usage: build-collector.sh --path main|loadbalancer}")
  echo "$(target_dir "$manifest")/$(binary_name "$manifest")"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "error: the Go toolchain is needed to build the Collector" >&2; exit 1; }
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(main loadbalancer)
for name in "${names[@]}"; do build "$(manifest_of "$name")"; done
