#!/usr/bin/env bash
# Builds and starts containerd 2.x with its CRI plugin, as the reference the
# benchmarks compare Berth with (bench/sidebyside_test.go): the containerd
# daemon, its runc shim and ctr, built from the Go module proxy (nothing else
# is downloaded), on its own socket, root, state dir, config, shim socket dir
# and CNI network, so it never disturbs the system Docker's containerd (which
# owns /run/containerd) or anything else. Idempotent; needs root.
#
#   hack/setup-containerd.sh        build (cached) and start it if it is not
#                                   running, import the test images and the
#                                   pause image into its k8s.io namespace,
#                                   print its version
#   hack/setup-containerd.sh env    print the environment the benchmarks
#                                   need to run against it (for eval)
#   hack/setup-containerd.sh stop   remove every pod on it (through its CRI:
#                                   CNI DEL runs), stop it and its shims,
#                                   remove its bridge; its root stays
#   hack/setup-containerd.sh build  only build the binaries (cached)
#
# Like hack/setup-docker-current.sh's daemon, it keeps running after the
# script exits; a second run finds it up and takes seconds. What the two
# scripts share (building into the engine cache, the pidfile, starting,
# waiting for and stopping the daemon, the set-up lock, the commands) is
# hack/lib/daemon.sh.
#
# Isolation (each is a default of containerd that would collide):
#   - socket, ttrpc socket, root, state dir and config of its own, and
#     imports = [] (the default imports /etc/containerd/conf.d/*.toml);
#   - shim sockets in its own directory (socket_dir; by default every
#     containerd run as root puts them in /run/containerd/s);
#   - pod network namespaces under its state dir, not /var/run/netns;
#   - NRI off (it would listen on /var/run/nri/nri.sock), no debug socket, no
#     metrics listener, streaming on 127.0.0.1 on a free port;
#   - a CNI conf dir of its own with a bridge network of its own
#     (berthctrd0, 10.232.0.0/16: private dockerds take 10.231.x), the same
#     plugin chain the benchmarks give
#     Berth (bridge + host-local + portmap + firewall + bandwidth);
#   - runc by absolute path (BinaryName), never put on PATH.
#
# Host specifics: cgroup v1 with the cgroupfs driver (SystemdCgroup =
# false); no CAP_SYS_RESOURCE in any process's bounding set, so the CRI must
# not lower oom_score_adj (restrict_oom_score_adj = true clamps the pause
# container's -998 to containerd's own score); no AppArmor in the kernel.
# No registry is reachable: the sandbox image is Berth's own pause image
# (berth.local/pause:1.0, written by hack/pause-image), and the test image is
# hack/build-test-images.sh's, copied from Docker (`docker save | ctr images
# import`).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

# The engine under test. Bumping the version builds into a new cache
# directory and restarts the daemon on the new binaries.
CONTAINERD_VERSION=v2.4.2

name=berth-containerd
log_tag=setup-containerd
daemon=containerd
daemon_version=$CONTAINERD_VERSION
cache=$engines/containerd-$CONTAINERD_VERSION
run_dir=/run/$name
root_dir=/var/lib/$name
log_file=/var/log/$name.log
sock=$run_dir/containerd.sock
endpoint=unix://$sock
config=$run_dir/config.toml
pidfile=$run_dir/containerd.pid
daemon_mark="--config $config"
cni_conf_dir=$run_dir/net.d
cni_bin_dir=/usr/lib/cni
network=berth-containerd
bridge=berthctrd0
subnet=10.232.0.0/16
sandbox_image=berth.local/pause:1.0
test_image=berth-test/busybox:latest
# Where the images are copied from: the Docker the benchmarks run against.
docker_host=${BERTH_TEST_DOCKER_HOST:-unix:///var/run/docker.sock}

# runc: the current-engine build's (hack/setup-docker-current.sh; the
# newest, should there be several), else Debian's. containerd 2.x wants
# runc >= 1.2; Debian's is 1.1.5.
runc_bin() {
	local c found=
	for c in "$engines"/moby-*-runc-v*/runc; do
		[[ -x $c ]] && found=$c
	done
	if [[ -n $found ]]; then
		echo "$found"
		return
	fi
	log "no runc built by hack/setup-docker-current.sh in $engines; trying the one on PATH (containerd 2.x wants runc >= 1.2)"
	command -v runc || true
}

print_env() {
	printf 'export BERTH_BENCH_CONTAINERD_ENDPOINT=%q\n' "$endpoint"
}

# ctr_ runs ctr on the CRI's namespace (its warning that cgroup v1 is deprecated
# is left out).
ctr_() { "$cache/ctr" --address "$sock" --namespace k8s.io "$@" 2> >(grep -v "DEPRECATION: The support for cgroup v1" >&2); }

daemon_ok() { timeout 5 "$cache/ctr" --address "$sock" version >/dev/null 2>&1; }

# shim_pids prints the pids of the shims of this containerd (their command
# lines name its socket).
shim_pids() {
	local p
	for p in /proc/[0-9]*; do
		# 2>/dev/null first: it then hides the shell's own "No such file"
		# too, for a process gone since.
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "^$cache/containerd-shim-runc-v2 .*-address $sock "; then
			echo "${p#/proc/}"
		fi
	done
}

binaries=(containerd containerd-shim-runc-v2 ctr)

# build_binary builds one binary at the pinned version into dir, at low
# priority (the machine is shared).
build_binary() {
	local tmp=$1 b=$2 module=github.com/containerd/containerd/v2
	local ldflags="-X $module/version.Version=${CONTAINERD_VERSION#v}"
	log "building $b $CONTAINERD_VERSION (the first build of containerd takes several minutes)"
	case $b in
	containerd-shim-runc-v2)
		# Static and without the shim's gRPC server (ttrpc only),
		# as containerd's own release builds it.
		quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=0 nice -n 15 go install \
			-tags no_grpc -ldflags "$ldflags" "$module/cmd/$b@$CONTAINERD_VERSION"
		;;
	*)
		# urfave_cli_no_docs: no man-page generator; no_btrfs: the
		# btrfs snapshotter needs btrfs headers (cgo).
		quietly "$tmp" env GOBIN="$tmp" GOFLAGS=-buildvcs=false nice -n 15 go install \
			-tags "urfave_cli_no_docs no_btrfs" -ldflags "$ldflags" "$module/cmd/$b@$CONTAINERD_VERSION"
		;;
	esac
}

# write_config writes the daemon's config and CNI network as config.new and
# conflist.new in its run directory (never in the CNI conf dir, where a
# half-written file would be read); install_config moves them in.
conflist=$cni_conf_dir/10-$network.conflist
write_config() {
	local runc=$1
	mkdir -p "$run_dir" "$root_dir" "$cni_conf_dir"
	cat >"$config.new" <<EOF
# Written by hack/setup-containerd.sh; rewritten on every start.
version = 4
root = '$root_dir'
state = '$run_dir/state'
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$sock'
  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$sock.ttrpc'
  [plugins.'io.containerd.server.v1.debug']
    address = ''
  [plugins.'io.containerd.server.v1.metrics']
    address = ''
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$run_dir/s'
  [plugins.'io.containerd.internal.v1.opt']
    path = '$root_dir/opt'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$sandbox_image'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    disable_apparmor = true
    netns_mounts_under_state_dir = true
    enable_criu = false
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '$cache/containerd-shim-runc-v2'
        disable_pause_image_pull = true
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$cni_bin_dir']
      conf_dir = '$cni_conf_dir'
      max_conf_num = 1
EOF
	cat >"$run_dir/conflist.new" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$network",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
    {"type": "firewall"},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}
EOF
}

# config_current succeeds when the written config and network are the ones
# in use.
config_current() { cmp -s "$config.new" "$config" && cmp -s "$run_dir/conflist.new" "$conflist"; }

install_config() {
	mv "$config.new" "$config"
	mv "$run_dir/conflist.new" "$conflist"
}

# daemon_cmd is the daemon's command line.
daemon_cmd=("$cache/containerd" --config "$config")

# daemon_current succeeds when the config and network just written are the
# ones containerd (at pid $1) runs with.
daemon_current() {
	config_current && return 0
	# Written by an older version of this script (or another runc): its
	# pods go, and the bridge, whose address may have changed.
	log "restarting containerd pid $1 with this script's configuration"
	return 1
}

start_daemon() {
	local pid runc
	runc=$(runc_bin)
	[[ -n $runc ]] || {
		log "no runc: run hack/setup-docker-current.sh (it builds runc 1.5) or install Debian's runc"
		exit 1
	}
	write_config "$runc"
	if pid=$(daemon_pid); then
		if keep_daemon "$pid"; then
			rm -f "$config.new" "$run_dir/conflist.new"
			return 0
		fi
		daemon_ok && remove_pods
		stop_containerd
		ip link del "$bridge" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	install_config
	log "starting containerd $CONTAINERD_VERSION on $endpoint with runc $runc (log: $log_file)"
	spawn_daemon
	echo $! >"$pidfile"
	await_daemon
}

# remove_pods stops and removes every pod sandbox through containerd's CRI,
# so CNI DEL runs and the addresses, iptables rules and network namespaces
# go with them.
remove_pods() {
	local repo
	repo=$(cd "$(dirname "$0")/.." && pwd)
	(cd "$repo" && go run ./hack/cri-reset "$endpoint") || log "removing the pods failed; containers may be left"
}

# stop_containerd stops containerd, then its shims.
stop_containerd() {
	local p
	stop_daemon 30 || return 1
	# Shims outlive containerd; with no pods left, each holds nothing.
	for p in $(shim_pids); do
		kill -TERM "$p" 2>/dev/null || true
	done
}

# import_images puts the sandbox and test images into the k8s.io namespace
# (the CRI's), unless they are there: Berth's pause image straight from
# Berth's code (hack/pause-image writes it as an image archive), the test
# image copied from Docker (read only: Docker is not changed).
import_images() {
	local repo id have
	repo=$(cd "$(dirname "$0")/.." && pwd)
	have=$(ctr_ images ls -q)
	# An image is there when containerd has its name and its id (the CRI
	# names every image by its config digest too), so a changed image is
	# imported again.
	id=$(cd "$repo" && go run ./hack/pause-image "$sandbox_image" | tar -t | sed -n 's/\.json$//p')
	if ! grep -qxF "sha256:$id" <<<"$have" || ! grep -qxF "$sandbox_image" <<<"$have"; then
		log "importing Berth's pause image as $sandbox_image"
		(cd "$repo" && go run ./hack/pause-image "$sandbox_image") | ctr_ images import - >/dev/null
	fi
	# Docker's image id is the config digest on Docker 20.10; under current
	# Docker's containerd image store it is the manifest digest, so there
	# the image is copied on every start (a second or so).
	if ! id=$(DOCKER_HOST=$docker_host docker image inspect -f '{{.Id}}' "$test_image" 2>/dev/null); then
		log "$test_image is missing in $docker_host: run hack/setup.sh (or hack/setup-docker-current.sh for that engine)"
		exit 1
	fi
	if ! grep -qxF "$id" <<<"$have" || ! grep -qxF "$(ctr_name "$test_image")" <<<"$have"; then
		log "importing $test_image from $docker_host"
		DOCKER_HOST=$docker_host docker save "$test_image" | ctr_ images import --platform linux/amd64 - >/dev/null
	fi
}

# ctr_name is the name ctr gives an image Docker calls ref (Docker Hub's
# short names in full).
ctr_name() {
	case $1 in
	*.*/* | *:*/* | localhost/*) echo "$1" ;;
	*/*) echo "docker.io/$1" ;;
	*) echo "docker.io/library/$1" ;;
	esac
}

stop_command() {
	if daemon_pid >/dev/null; then
		remove_pods
	fi
	stop_containerd
	ip link del "$bridge" 2>/dev/null || true
}

needed=(docker ip)
missing_hint="run hack/setup.sh first"
root_why="containerd, which creates a bridge and network namespaces"

after_start() {
	import_images
	log "containerd $("$cache/ctr" --address "$sock" version 2>/dev/null | awk '/Server:/{s=1} s&&/Version:/{print $2; exit}') at $endpoint"
}

daemon_main "$@"
