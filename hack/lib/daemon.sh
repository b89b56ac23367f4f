# shellcheck shell=bash disable=SC2154 # the variables the sourcing script sets
# What hack/setup-docker-current.sh and hack/setup-containerd.sh share: each
# builds a daemon from the Go module proxy into a cache directory under
# ~/.cache/berth/engines and starts it as a private, long-running daemon
# that outlives the script, found again through its pidfile. Sourced, never
# run; it does nothing when sourced but set engines.
#
# The sourcing script sets, before calling anything here:
#   name            the daemon's name: the set-up lock is /run/$name.lock
#   log_tag         the prefix of every line log writes
#   daemon          the daemon's binary in $cache, and its name in messages
#   daemon_version  the version it is built at, for messages
#   cache           the directory its binaries are built into
#   binaries        (array) what build puts in $cache
#   pidfile         the file holding the daemon's pid
#   daemon_mark     an argument only this script's daemon has on its
#                   command line (followed by a space there)
#   daemon_cmd      (array) the daemon's command line
#   log_file        where the daemon's output goes
#   needed          (array) the commands start needs on PATH, and
#   missing_hint    what to do when one is missing
#   root_why        why the script must run as root, after "it starts "
# and defines these functions:
#   print_env       prints the environment for tests (the env command)
#   daemon_ok       succeeds when the daemon answers
#   daemon_current PID
#                   succeeds when the daemon at PID runs this script's
#                   configuration; logs why not otherwise
#   build_binary DIR BINARY
#                   builds BINARY into DIR
#   start_daemon    starts the daemon unless it is up (the start command)
#   after_start     what the start command does once the daemon is up
#   stop_command    what the stop command does
# and may define build_prepare MISSING..., run before the missing binaries
# are built.

# engines is the directory every engine's build is cached under.
engines=${BERTH_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/engines}

# log writes a line to stderr, prefixed with the script's name.
log() { printf '%s: %s\n' "$log_tag" "$*" >&2; }

# poll runs a command up to TRIES times, INTERVAL seconds apart, until it
# succeeds; it fails when the command never did.
poll() {
	local tries=$1 interval=$2
	shift 2
	for _ in $(seq 1 "$tries"); do
		"$@" && return 0
		sleep "$interval"
	done
	return 1
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

# build installs the binaries into the cache at exactly the pinned versions;
# only the ones missing there are built (with build_binary), so a cache from
# before a binary was added gets just that one. A partial build never lands:
# they are built into a temporary directory and moved in at the end.
build() {
	local b missing=()
	for b in "${binaries[@]}"; do
		[[ -x $cache/$b ]] || missing+=("$b")
	done
	((${#missing[@]})) || return 0
	command -v go >/dev/null || {
		log "go is not installed"
		exit 1
	}
	if declare -F build_prepare >/dev/null; then
		build_prepare "${missing[@]}"
	fi
	local tmp
	mkdir -p "$engines"
	tmp=$(mktemp -d "$engines/.build-XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	for b in "${missing[@]}"; do
		build_binary "$tmp" "$b"
	done
	mkdir -p "$cache"
	for b in "${missing[@]}"; do
		mv "$tmp/$b" "$cache/"
	done
	rm -rf "$tmp"
	trap - EXIT
	log "built into $cache"
}

# daemon_pid prints the pid of the daemon this script started, if it runs.
# The pid must be a process whose command line has daemon_mark: /run may
# outlive a reboot here, and a stale pid may now be someone else's process.
daemon_pid() {
	local pid
	[[ -f $pidfile ]] || return 1
	pid=$(cat "$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# 2>/dev/null first: it then hides the shell's own "No such file"
	# too, for a process gone since.
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$daemon_mark " || return 1
	echo "$pid"
}

# keep_daemon succeeds when the daemon at PID (daemon_pid's) can stay: it
# runs the cached binary and this script's configuration, and answers.
# Other test runs may be using it: a busy machine gets 12 seconds before it
# is called hung. Otherwise it logs why the daemon is to be replaced.
keep_daemon() {
	local pid=$1 exe
	exe=$(readlink "/proc/$pid/exe" || true)
	if [[ $exe != "$cache/$daemon" ]]; then
		log "replacing $daemon pid $pid ($exe) with $daemon_version"
		return 1
	fi
	daemon_current "$pid" || return 1
	poll 12 1 daemon_ok && return 0
	log "$daemon pid $pid does not answer; replacing it"
	return 1
}

# spawn_daemon starts daemon_cmd in a session of its own, appending its
# output to log_file; it outlives the script.
spawn_daemon() {
	# NOTE: 9>&- below: the daemon must not inherit the set-up lock, or it
	# would hold it for its whole life and the next run would wait forever.
	setsid nohup "${daemon_cmd[@]}" >>"$log_file" 2>&1 </dev/null 9>&- &
}

# await_daemon waits up to a minute for the daemon just spawned to answer;
# if it does not, it shows the end of its log and exits.
await_daemon() {
	poll 120 0.5 daemon_ok && return 0
	log "$daemon did not come up; last lines of $log_file:"
	tail -30 "$log_file" >&2 || true
	exit 1
}

# stop_daemon stops the daemon this script started, if it runs: SIGTERM,
# then up to SECONDS for it to exit (it fails if it does not); then it
# removes the pidfile.
stop_daemon() {
	local seconds=$1 pid
	if pid=$(daemon_pid); then
		log "stopping $daemon (pid $pid)"
		kill -TERM "$pid"
		for _ in $(seq 1 $((seconds * 2))); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$daemon (pid $pid) did not stop on SIGTERM in ${seconds}s"
			return 1
		fi
	fi
	rm -f "$pidfile"
}

# lock serialises the set-up: two test runs at once share one daemon. The
# first build can take several minutes; a wait far beyond that means
# something holds the lock by mistake, and fails loudly instead of hanging.
lock() {
	exec 9>"/run/$name.lock"
	if ! flock -w 1800 9; then
		log "another set-up has held /run/$name.lock for 30 minutes; holders: $(fuser "/run/$name.lock" 2>/dev/null || true)"
		exit 1
	fi
}

# daemon_main runs the command the script was called with: start (the
# default), env, stop or build.
daemon_main() {
	if [[ ${1:-} == env ]]; then
		print_env
		return
	fi
	if [[ $(id -u) -ne 0 ]]; then
		log "must run as root (it starts $root_why)"
		exit 1
	fi
	case ${1:-start} in
	stop)
		lock
		stop_command
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
	for c in "${needed[@]}"; do
		command -v "$c" >/dev/null || {
			log "$c is missing: $missing_hint"
			exit 1
		}
	done
	lock
	build
	start_daemon
	after_start
}
