#!/usr/bin/env bash
# Sets up this machine for Berth: installs what is missing with apt, starts
# Docker Engine if it is not running, and builds the local test images.
# Idempotent and safe to rerun; needs root. Never pulls from the internet.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (it installs packages and starts dockerd)"
	exit 1
fi

# gcc, make, libc6-dev, bzip2, xz-utils, patch: hack/build-node-e2e-images.sh builds
# busybox from Debian's source package; curl: it copies an image out of the
# local registry.
packages=(docker.io containernetworking-plugins busybox-static docker-registry iptables apache2-utils libseccomp-dev criu
	gcc make libc6-dev bzip2 xz-utils patch curl)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || log "apt-get update failed; trying with the cached package lists"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Docker: start the system daemon by hand unless it already answers. On
# machines with systemd as init, use the unit instead.
docker_ok() { DOCKER_HOST=unix:///var/run/docker.sock timeout 5 docker version >/dev/null 2>&1; }
if ! docker_ok; then
	if [[ -d /run/systemd/system ]] && systemctl start docker 2>/dev/null; then
		log "started docker.service"
	else
		log "starting dockerd (log: /var/log/dockerd.log)"
		# A stale pid file from a dead daemon blocks the start.
		if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
			rm -f /var/run/docker.pid
		fi
		setsid nohup /usr/sbin/dockerd --pidfile /var/run/docker.pid >>/var/log/dockerd.log 2>&1 </dev/null &
	fi
	for _ in $(seq 1 120); do
		docker_ok && break
		sleep 0.5
	done
	if ! docker_ok; then
		log "dockerd did not come up; last lines of /var/log/dockerd.log:"
		tail -20 /var/log/dockerd.log >&2 || true
		exit 1
	fi
fi
log "docker $(DOCKER_HOST=unix:///var/run/docker.sock docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
# The tests of Docker's own bridge network need the daemon's docker0. It
# goes when any dockerd starts with --bridge=none (which deletes the
# default bridge), and the daemon then fails those tests obscurely: say so.
if ! ip link show docker0 >/dev/null 2>&1; then
	log "the system Docker's bridge docker0 is missing (deleted by a dockerd started with --bridge=none?); restart Docker to recreate it"
	exit 1
fi

# The user Docker's --userns-remap=default maps containers to, with its
# subordinate ID range, for the user-namespace tests' private daemons
# (dockerd would create them itself on first use; doing it here keeps the
# tests from editing /etc/passwd and /etc/subuid).
if ! getent passwd dockremap >/dev/null; then
	useradd --system --no-create-home --shell /usr/sbin/nologin dockremap
	log "added the system user dockremap (Docker's --userns-remap=default)"
fi
for f in /etc/subuid /etc/subgid; do
	grep -q '^dockremap:' "$f" 2>/dev/null || echo 'dockremap:100000:65536' >>"$f"
done

# A pod network for `make run`, unless the node already has one: bridge +
# host-local + portmap + firewall (Docker sets the FORWARD policy to DROP;
# the firewall plugin lets pod traffic through) + bandwidth.
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
	install -D -m 0644 "$(dirname "$0")/../contrib/cni/10-berth.conflist" /etc/cni/net.d/10-berth.conflist
	log "installed the default pod network /etc/cni/net.d/10-berth.conflist (10.88.0.0/16)"
fi

"$(dirname "$0")/build-test-images.sh" unix:///var/run/docker.sock
