#!/usr/bin/env bash
# Builds kube-apiserver for the migration test (make test-migrate) from the Go
# module proxy, through the separate module in test/apiserver, and caches it
# by version under ~/.cache/berth/. Prints the binary's path. The first build
# takes 10-15 minutes on two cores; later runs reuse the cached binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cd "$here/test/apiserver" && go list -m -f "{{.Version}}" k8s.io/kubernetes)
if [[ -z $version ]]; then
	echo "build-kube-apiserver: no k8s.io/kubernetes version in test/apiserver/go.mod" >&2
	exit 1
fi
cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
out=$cache/kube-apiserver-$version
if [[ -x $out ]]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
echo "build-kube-apiserver: building kube-apiserver $version (10-15 minutes the first time)" >&2
tmp=$(mktemp "$cache/.kube-apiserver-$version.XXXXXX")
trap 'rm -f "$tmp"' EXIT
(cd "$here/test/apiserver" && go build -trimpath -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver)
chmod 0755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
