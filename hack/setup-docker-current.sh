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

# The engine under test. Bumping a version builds into a new cache directory
# and restarts the daemon on the new binaries.
MOBY_VERSION=v2.0.0-beta.24 # the Docker 29.8 line, API 1.56
RUNC_VERSION=v1.5.2         # Debian's runc 1.1 fails under it ("namespace time does not exist")

name=berth-docker-current
cache=${BERTH_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/engines}/moby-$MOBY_VERSION-runc-$RUNC_VERSION
run_dir=/run/$name
data_root=/var/lib/$name
log_file=/var/log/$name.log
sock=$run_dir/docker.sock
host=unix://$sock
pidfile=$run_dir/docker.pid
bridge=berthcur0
bridge_cidr=10.230.0.1/24
runtime_name=berth-runc

log() { printf 'setup-docker-current: %s\n' "$*" >&2; }

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

docker_ok() { DOCKER_HOST=$host timeout 5 docker version >/dev/null 2>&1; }

# daemon_pid prints the pid of the daemon this script started, if it runs.
# The pid must be a process whose command line has this pidfile: /run may
# outlive a reboot here, and a stale pid may now be someone else's process.
daemon_pid() {
	local pid
	[[ -f $pidfile ]] || return 1
	pid=$(cat "$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--pidfile $pidfile " || return 1
	echo "$pid"
}

stop_daemon() {
	local pid
	if pid=$(daemon_pid); then
		log "stopping dockerd (pid $pid)"
		kill -TERM "$pid"
		for _ in $(seq 1 120); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "dockerd (pid $pid) did not stop on SIGTERM in 60s"
			return 1
		fi
	fi
	rm -f "$pidfile"
}

# quietly runs a command in dir with its output (go's hundreds of
# "downloading" lines on a clean machine) kept back unless it fails.
quietly() {
	local dir=$1 out
	shift
	if ! out=$(cd "$dir" && "$@" 2>&1); then
		printf '%s\n' "$out" | tail -40 >&2
		log "failed: $*"
		exit 1
	fi
}

# build installs dockerd, docker-proxy and runc at exactly the pinned versions
# into the cache; only the ones missing there are built (a cache from before
# docker-proxy was added gets just that). Only the Go module proxy is used. A
# partial build never lands: the binaries are installed into a temporary
# directory and moved in at the end.
build() {
	local b missing_bins=()
	for b in "${binaries[@]}"; do
		[[ -x $cache/$b ]] || missing_bins+=("$b")
	done
	if ((${#missing_bins[@]} == 0)); then
		return 0
	fi
	command -v go >/dev/null || {
		log "go is not installed"
		exit 1
	}
	local p missing=()
	if [[ " ${missing_bins[*]} " == *" runc "* ]]; then
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
	local tmp
	mkdir -p "$(dirname "$cache")"
	tmp=$(mktemp -d "$(dirname "$cache")/.build-XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	for b in "${missing_bins[@]}"; do
		case $b in
		dockerd)
			log "building dockerd $MOBY_VERSION (the first build takes several minutes)"
			# dockerd reports the module version as its own (a plain
			# go install would say "library-import").
			quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false go install \
				-ldflags "-X github.com/moby/moby/v2/dockerversion.Version=${MOBY_VERSION#v} -X github.com/moby/moby/v2/dockerversion.GitCommit=$MOBY_VERSION" \
				"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION"
			;;
		docker-proxy)
			# From the same module version as dockerd: the daemon
			# and its proxy speak a private protocol (-use-listen-fd).
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
	done
	mkdir -p "$cache"
	for b in "${missing_bins[@]}"; do
		mv "$tmp/$b" "$cache/"
	done
	rm -rf "$tmp"
	trap - EXIT
	log "built into $cache"
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

start_daemon() {
	local pid
	if pid=$(daemon_pid); then
		if [[ $(readlink "/proc/$pid/exe") != "$cache/dockerd" ]]; then
			log "replacing dockerd pid $pid ($(readlink "/proc/$pid/exe" || true)) with $MOBY_VERSION"
		elif [[ $(tr '\0' '\n' <"/proc/$pid/cmdline") != "$(printf '%s\n' "${daemon_cmd[@]}")" ]]; then
			# Started by an older version of this script, with other
			# flags (e.g. before docker-proxy was passed).
			log "restarting dockerd pid $pid with this script's flags (it runs: $(tr '\0' ' ' <"/proc/$pid/cmdline"))"
		else
			# Ours and current. Other test runs may be using it: give a
			# busy machine a minute before calling it hung.
			for _ in $(seq 1 12); do
				docker_ok && return 0
				sleep 1
			done
			log "dockerd pid $pid does not answer; replacing it"
		fi
		stop_daemon
	fi
	# A pidfile naming no daemon of ours is stale; dockerd refuses to
	# start while it names a live process.
	rm -f "$pidfile"
	ensure_bridge
	mkdir -p "$run_dir" "$data_root"
	echo '{}' >"$run_dir/daemon.json"
	log "starting dockerd $MOBY_VERSION on $host (log: $log_file)"
	# NOTE: 9>&- below: the daemon must not inherit the set-up lock, or it
	# would hold it for its whole life and the next run would wait forever.
	setsid nohup "${daemon_cmd[@]}" >>"$log_file" 2>&1 </dev/null 9>&- &
	for _ in $(seq 1 120); do
		docker_ok && return 0
		sleep 0.5
	done
	log "dockerd did not come up; last lines of $log_file:"
	tail -30 "$log_file" >&2 || true
	exit 1
}

# lock serialises the set-up: two `make test` runs at once share one daemon.
# The first build can take several minutes; a wait far beyond that means
# something holds the lock by mistake, and fails loudly instead of hanging.
lock() {
	exec 9>"/run/$name.lock"
	if ! flock -w 1800 9; then
		log "another set-up has held /run/$name.lock for 30 minutes; holders: $(fuser /run/$name.lock 2>/dev/null || true)"
		exit 1
	fi
}

main() {
	if [[ ${1:-} == env ]]; then
		print_env
		return
	fi
	if [[ $(id -u) -ne 0 ]]; then
		log "must run as root (it starts dockerd and creates a bridge)"
		exit 1
	fi
	case ${1:-start} in
	stop)
		lock
		stop_daemon
		ip link del "$bridge" 2>/dev/null || true
		return
		;;
	build)
		lock
		build
		return
		;;
	start) ;;
	*)
		log "usage: $0 [start|env|stop|build]"
		exit 2
		;;
	esac
	local c
	for c in docker containerd containerd-shim-runc-v2 docker-init ip; do
		command -v "$c" >/dev/null || {
			log "$c is missing: run hack/setup.sh first (Debian's docker.io brings the CLI, containerd and docker-init)"
			exit 1
		}
	done
	lock
	build
	start_daemon
	"$(dirname "$0")/build-test-images.sh" "$host"
	log "docker $(DOCKER_HOST=$host docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}}, minimum API {{.Server.MinAPIVersion}})') at $host"
}

main "$@"
