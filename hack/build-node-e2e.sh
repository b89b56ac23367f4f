#!/usr/bin/env bash
# Builds Kubernetes' node e2e suite for the node conformance run (make
# test-node-e2e, docs/conformance.md) from the Go module proxy, through the
# build-only module in test/nodee2e/build, and caches it by version under
# ~/.cache/berth/node-e2e-<version>/ (BERTH_CACHE_DIR moves the cache):
#
#   e2e_node.test  go test -c k8s.io/kubernetes/test/e2e_node
#   ginkgo         the CLI that runs it in parallel (ginkgo -p)
#   agnhost        k8s.io/kubernetes/test/images/agnhost, static, and
#   nnp            k8s.io/kubernetes/test/images/nonewprivs, static: the
#                  programs of the agnhost and nonewprivs test images
#                  (hack/build-node-e2e-images.sh)
#
# Prints the directory on stdout. The first build takes about half an hour on
# two busy cores (README, "Node conformance"); later runs reuse the cache.
# The version must be the kubelet suite's (test/kubelet/build), so that the
# suite judges the kubelet it was written for.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cd "$here/test/nodee2e/build" && go list -m -f "{{.Version}}" k8s.io/kubernetes)
kubelet_version=$(cd "$here/test/kubelet/build" && go list -m -f "{{.Version}}" k8s.io/kubernetes)
if [[ -z $version || $version != "$kubelet_version" ]]; then
	echo "build-node-e2e: test/nodee2e/build has k8s.io/kubernetes '$version' but test/kubelet/build has '$kubelet_version'" >&2
	exit 1
fi
cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
dir=$cache/node-e2e-$version
bins=(ginkgo agnhost nnp e2e_node.test)
missing=0
for b in "${bins[@]}"; do
	[[ -x $dir/$b ]] || missing=1
done
if ((missing == 0)); then
	echo "$dir"
	exit 0
fi
mkdir -p "$dir"
echo "build-node-e2e: building the node e2e suite $version from the Go module proxy (about half an hour the first time)" >&2
start=$SECONDS
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The version the suite and agnhost report is set at link time in
# Kubernetes' own release builds; do the same.
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
cd "$here/test/nodee2e/build"
for b in "${bins[@]}"; do
	[[ -x $dir/$b ]] && continue
	out=$tmp/$b
	case $b in
	ginkgo) go build -trimpath -o "$out" github.com/onsi/ginkgo/v2/ginkgo ;;
	# agnhost and nnp run in images built FROM scratch: no libc to link.
	agnhost) CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out" k8s.io/kubernetes/test/images/agnhost ;;
	nnp) CGO_ENABLED=0 go build -trimpath -o "$out" k8s.io/kubernetes/test/images/nonewprivs ;;
	e2e_node.test) go test -c -trimpath -ldflags "$ldflags" -o "$out" k8s.io/kubernetes/test/e2e_node ;;
	esac
	# Into the cache one by one: a later failure keeps what was built.
	chmod 0755 "$out"
	mv "$out" "$dir/$b"
done
echo "build-node-e2e: built $dir in $((SECONDS - start))s" >&2
echo "$dir"
