#!/bin/bash
# Runs inside the cgroup v2 virtual machine (berth-vm-test.service starts it
# once Docker is up; the machine powers off when it ends). Everything it
# needs is on the 9p share at /mnt/share, put there by
# hack/vm/test-cgroupv2.sh; everything it reports goes to /mnt/share/out.
set -uo pipefail
share=/mnt/share
out=$share/out
mkdir -p "$out"
exec > >(tee -a "$out/guest.log") 2>&1
say() { printf 'vm: %s\n' "$*"; }
# shellcheck source=/dev/null
source "$share/env"

say "up $(cut -d' ' -f1 /proc/uptime)s after boot; kernel $(uname -r); $(nproc) CPUs"
say "cgroup: $(stat -fc %T /sys/fs/cgroup) ($(cat /sys/fs/cgroup/cgroup.controllers))"
say "init: $(cat /proc/1/comm)"

for _ in $(seq 1 300); do
	docker version >/dev/null 2>&1 && break
	sleep 1
done
if ! docker info --format 'docker {{.ServerVersion}}, cgroup driver {{.CgroupDriver}}, cgroup v{{.CgroupVersion}}'; then
	say "FAIL: Docker did not come up"
	journalctl -b -u docker -u containerd --no-pager | tail -100 >"$out/docker.journal"
	echo 1 >"$out/e2e.rc"
	exit 1
fi

start=$(cut -d' ' -f1 /proc/uptime)
for tar in "$share"/images/*.tar; do
	docker load -i "$tar" >/dev/null || say "docker load $tar failed"
done
say "loaded the test images ($(docker images -q | wc -l) images) by ${start%.*}s + $(($(cut -d' ' -f1 /proc/uptime | cut -d. -f1) - ${start%.*}))s"

rc=0
if [[ -n ${E2E_RUN:-} ]]; then
	say "e2e: ${E2E_RUN}"
	cd "$share/bin" || exit 1
	export BERTH_TEST_BINARY=$share/bin/berth BERTH_TEST_DOCKERD_BINARY=/usr/sbin/dockerd
	# Private daemons (the Docker restart tests) use the node's cgroup
	# driver too.
	export BERTH_TEST_DOCKERD_ARGS="--exec-opt native.cgroupdriver=systemd"
	"$share/bin/e2e.test" -test.v -test.count=1 -test.timeout "${E2E_TIMEOUT:-60m}" \
		-test.parallel "${E2E_PARALLEL:-2}" -test.run "$E2E_RUN" >"$out/e2e.log" 2>&1
	rc=$?
	echo "$rc" >"$out/e2e.rc"
	say "e2e: exit $rc"
fi
if [[ -n ${KUBELET_RUN:-} ]]; then
	# After the e2e suite, alone: kubelet manages every pod Berth reports.
	say "kubelet: ${KUBELET_RUN}"
	cd "$share/bin" || exit 1
	export BERTH_TEST_BINARY=$share/bin/berth BERTH_TEST_KUBELET=$share/bin/kubelet
	"$share/bin/kubelet.test" -test.v -test.count=1 -test.timeout "${KUBELET_TIMEOUT:-30m}" \
		-test.run "$KUBELET_RUN" >"$out/kubelet.log" 2>&1
	krc=$?
	echo "$krc" >"$out/kubelet.rc"
	say "kubelet: exit $krc"
	((krc == 0)) || rc=$krc
fi
# What a failure needs to be understood.
{
	docker info 2>&1
	systemd-cgls --no-pager -a 2>&1 | head -200
	docker ps -a 2>&1
} >"$out/node.txt"
journalctl -b --no-pager -u docker -u containerd >"$out/docker.journal" 2>&1
say "done at $(cut -d' ' -f1 /proc/uptime)s"
exit "$rc"
