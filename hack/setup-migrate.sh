#!/usr/bin/env bash
# Sets up what the migration test (make test-migrate) needs beyond
# hack/setup.sh: Debian's etcd-server, and kube-apiserver built from the Go
# module proxy (cached under ~/.cache/berth/ by version). Idempotent; needs root.
set -euo pipefail
log() { printf 'setup-migrate: %s\n' "$*" >&2; }
if ! dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "install ok installed"; then
	log "installing etcd-server"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || log "apt-get update failed; trying with the cached package lists"
	apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
# The package's own etcd service is not wanted: the test starts its own.
log "etcd $(etcd --version | head -1)"
log "kube-apiserver: $("$(dirname "$0")/build-kube-apiserver.sh")"
