#!/usr/bin/env bash
# Builds and starts a second Docker Engine for tests: current upstream dockerd,
# its docker-proxy and runc, built from the Go module proxy (nothing else is
# downloaded), on its
# own socket, data root, exec root, pidfile and bridge, so it never disturbs
# the system daemon. Idempotent; needs root.
#
#   hack/setup-docker-current.sh         build (cached) and start it if it is
#                                        not running, build the test images
#                                        into it, print its version
#   hack/setup-docker-current.sh env     print the environment the e2e suite
#                                        needs to run against it (for eval)
#   hack/setup-docker-current.sh stop    stop it (by its pidfile) and remove
#                                        its bridge; its data root stays
#   hack/setup-docker-current.sh build   only build the binaries (cached)
#
# The daemon keeps running after the script exits, like the system daemon
# hack/setup.sh starts: a second `make test` finds it up and takes seconds.
# What it shares with hack/setup-containerd.sh (building into the engine
# cache, the pidfile, starting, waiting for and stopping the daemon, the
# set-up lock, the commands) is hack/lib/daemon.sh.
#
# Isolation from the system daemon (both traps were seen on these machines):
#   - its own bridge (never --bridge=none, which deletes the host's docker0);
#   - the built dockerd, docker-proxy and runc live in a private cache
#     directory and are passed by absolute path (--add-runtime,
#     --default-runtime, --userland-proxy-path), never put on PATH, where the
#     system daemon would silently pick them up (and Debian's docker-proxy,
#     the one on PATH, is too old for current dockerd: it has no
#     -use-listen-fd, so publishing a port fails);
#   - --iptables=false: it adds no iptables rules, so the system daemon's
#     rules (and its FORWARD policy) stay as they are;
#   - its own --config-file, so /etc/docker/daemon.json is not read;
#   - containerd: Debian's, started and managed by this dockerd under its own
#     exec root (its own socket and state), separate from the system one's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

# The engine under test. Bumping a version builds into a new cache directory
# and restarts the daemon on the new binaries.
MOBY_VERSION=v2.0.0-beta.24 # the Docker 29.8 line, API 1.56
RUNC_VERSION=v1.5.2         # Debian's runc 1.1 fails under it ("namespace time does not exist")

name=berth-docker-current
log_tag=setup-docker-current
daemon=dockerd
daemon_version=$MOBY_VERSION
cache=$engines/moby-$MOBY_VERSION-runc-$RUNC_VERSION
run_dir=/run/$name
data_root=/var/lib/$name
log_file=/var/log/$name.log
sock=$run_dir/docker.sock
host=unix://$sock
pidfile=$run_dir/docker.pid
daemon_mark="--pidfile $pidfile"
bridge=berthcur0
bridge_cidr=10.230.0.1/24
runtime_name=berth-runc

# daemon_args are the flags every daemon of this engine needs beyond its own
# paths: the built runc as the default runtime, and the built docker-proxy
# for published ports. The e2e framework's private daemons get them too
# (BERTH_TEST_DOCKERD_ARGS).
daemon_args=(
	--add-runtime "$runtime_name=$cache/runc" --default-runtime "$runtime_name"
	--userland-proxy-path "$cache/docker-proxy"
)

# binaries are what build puts in the cache.
binaries=(dockerd docker-proxy runc)

print_env() {
	printf 'export BERTH_TEST_DOCKER_HOST=%q\n' "$host"
	printf 'export BERTH_TEST_DOCKERD_BINARY=%q\n' "$cache/dockerd"
	printf 'export BERTH_TEST_DOCKERD_ARGS=%q\n' "${daemon_args[*]}"
}

daemon_ok() { DOCKER_HOST=$host timeout 5 docker version >/dev/null 2>&1; }

# build_prepare installs the Debian packages building runc with seccomp
# needs, when runc is to be built.
build_prepare() {
	local p missing=()
	if [[ " $* " == *" runc "* ]]; then
		for p in libseccomp-dev gcc pkg-config; do
			dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
		done
	fi
	if ((${#missing[@]})); then
		log "installing ${missing[*]} (needed to build runc with seccomp)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq || log "apt-get update failed; trying with the cached package lists"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# build_binary builds dockerd, docker-proxy or runc at its pinned version
# into dir.
build_binary() {
	local tmp=$1 b=$2
	case $b in
	dockerd)
		log "building dockerd $MOBY_VERSION (the first build takes several minutes)"
		# dockerd reports the module version as its own (a plain go
		# install would say "library-import").
		quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false go install \
			-ldflags "-X github.com/moby/moby/v2/dockerversion.Version=${MOBY_VERSION#v} -X github.com/moby/moby/v2/dockerversion.GitCommit=$MOBY_VERSION" \
			"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION"
		;;
	docker-proxy)
		# From the same module version as dockerd: the daemon and its
		# proxy speak a private protocol (-use-listen-fd).
		log "building docker-proxy $MOBY_VERSION"
		quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false go install \
			"github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION"
		;;
	runc)
		log "building runc $RUNC_VERSION"
		quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=1 go install -tags seccomp \
			"github.com/opencontainers/runc@$RUNC_VERSION"
		"$tmp/runc" --version | grep -q "libseccomp" || {
			log "runc was built without seccomp"
			exit 1
		}
		;;
	esac
}

ensure_bridge() {
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
	fi
	if ! ip -4 addr show dev "$bridge" | grep -q "inet $bridge_cidr"; then
		ip addr add "$bridge_cidr" dev "$bridge"
	fi
	ip link set "$bridge" up
}

# daemon_cmd is the daemon's command line.
daemon_cmd=(
	"$cache/dockerd"
	--config-file "$run_dir/daemon.json"
	--host "$host"
	--data-root "$data_root"
	--exec-root "$run_dir/exec"
	--pidfile "$pidfile"
	--bridge "$bridge"
	--iptables=false --ip6tables=false --ip-masq=false --ip-forward=false
	--cgroup-parent "/$name"
	"${daemon_args[@]}"
)

# daemon_current succeeds when dockerd (at pid $1) runs with daemon_cmd.
daemon_current() {
	[[ $(tr '\0' '\n' <"/proc/$1/cmdline") == "$(printf '%s\n' "${daemon_cmd[@]}")" ]] && return 0
	# Started by an older version of this script, with other flags (e.g.
	# before docker-proxy was passed).
	log "restarting dockerd pid $1 with this script's flags (it runs: $(tr '\0' ' ' <"/proc/$1/cmdline"))"
	return 1
}

start_daemon() {
	local pid
	if pid=$(daemon_pid); then
		keep_daemon "$pid" && return 0
		stop_daemon 60
	fi
	# A pidfile naming no daemon of ours is stale; dockerd refuses to
	# start while it names a live process.
	rm -f "$pidfile"
	ensure_bridge
	mkdir -p "$run_dir" "$data_root"
	echo '{}' >"$run_dir/daemon.json"
	log "starting dockerd $MOBY_VERSION on $host (log: $log_file)"
	spawn_daemon
	await_daemon
}

stop_command() {
	stop_daemon 60
	ip link del "$bridge" 2>/dev/null || true
}

needed=(docker containerd containerd-shim-runc-v2 docker-init ip)
missing_hint="run hack/setup.sh first (Debian's docker.io brings the CLI, containerd and docker-init)"
root_why="dockerd and creates a bridge"

after_start() {
	"$(dirname "$0")/build-test-images.sh" "$host"
	log "docker $(DOCKER_HOST=$host docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}}, minimum API {{.Server.MinAPIVersion}})') at $host"
}

daemon_main "$@"
