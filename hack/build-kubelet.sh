#!/usr/bin/env bash
# Builds kubelet for the kubelet suite (make test-kubelet) from the Go module
# proxy, through the build-only module in test/kubelet/build, and caches it by
# version under ~/.cache/berth/kubelet-<version>/kubelet (BERTH_CACHE_DIR
# moves the cache). Prints the binary's path on stdout. The first build takes
# minutes (see README, "kubelet suite"); later runs reuse the cached binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cd "$here/test/kubelet/build" && go list -m -f "{{.Version}}" k8s.io/kubernetes)
if [[ -z $version ]]; then
	echo "build-kubelet: no k8s.io/kubernetes version in test/kubelet/build/go.mod" >&2
	exit 1
fi
cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
dir=$cache/kubelet-$version
out=$dir/kubelet
if [[ -x $out ]]; then
	echo "$out"
	exit 0
fi
mkdir -p "$dir"
echo "build-kubelet: building kubelet $version from the Go module proxy (minutes the first time)" >&2
start=$SECONDS
tmp=$(mktemp "$dir/.kubelet.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# The version kubelet reports (--version, its node status) is set at link
# time in Kubernetes' own release builds; do the same.
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
(cd "$here/test/kubelet/build" && go build -trimpath -ldflags "$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kubelet)
chmod 0755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "build-kubelet: built $out in $((SECONDS - start))s" >&2
echo "$out"
