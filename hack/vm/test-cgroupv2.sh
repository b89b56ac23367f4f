#!/usr/bin/env bash
# make test-cgroupv2: runs Berth's cgroup-dependent tests on a node of the
# kind Kubernetes expects now — cgroup v2 only, systemd as init, Docker on
# the systemd cgroup driver — inside a virtual machine, since this host
# cannot leave cgroup v1.
#
#   1. installs QEMU and debootstrap with apt if they are missing;
#   2. builds (or reuses) the Debian bookworm image (hack/vm/build-image.sh);
#   3. builds berth and the test binaries here and puts them, the test
#      images (docker save) and hack/vm/guest.sh on a 9p share;
#   4. boots the image under QEMU (software emulation unless the host has
#      usable hardware virtualisation), without a network device; a systemd
#      unit in the guest runs the tests and powers off;
#   5. prints each test's PASS/FAIL and "N passed, N failed".
#
# Nothing is skipped: a missing tool, a failed image build or a machine that
# never reports is a failure. The run directory (console log, the guest's
# logs and diagnostics) is kept when anything failed, removed otherwise.
#
# Environment: CGROUPV2_RUN (a go test -run pattern over test/e2e),
# CGROUPV2_KUBELET (1, the default, also runs test/kubelet's TestSystemdNode
# after the e2e tests; 0 leaves it out),
# CGROUPV2_PARALLEL, CGROUPV2_TIMEOUT (the suite's, inside), CGROUPV2_SCALE
# (BERTH_TEST_TIMEOUT_SCALE inside; default 4), BERTH_VM_TIMEOUT (seconds
# the machine may run), BERTH_VM_KEEP=1 (keep the run directory),
# BERTH_VM_IMAGE (boot this image directory instead of building one).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

log() { printf 'cgroupv2: %s\n' "$*" >&2; }
fail() {
	log "FAIL: $*"
	echo "0 passed, 1 failed"
	exit 1
}

if [[ $(id -u) -ne 0 ]]; then
	fail "must run as root (apt-get, debootstrap)"
fi

# 1. Tools, installed as hack/setup.sh installs its own: only what is missing.
tools=(qemu-system-x86 qemu-utils debootstrap e2fsprogs)
missing=()
for p in "${tools[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || log "apt-get update failed; trying with the cached package lists"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
fi
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is missing"

t0=$SECONDS
# 2. The image.
image=${BERTH_VM_IMAGE:-}
if [[ -z $image ]]; then
	image=$(nice -n 10 hack/vm/build-image.sh) || fail "building the VM image (hack/vm/build-image.sh)"
fi
t_image=$((SECONDS - t0))

run=$(mktemp -d /tmp/berth-cgroupv2.XXXXXX)
share=$run/share
mkdir -p "$share/bin" "$share/images" "$share/out"
keep=${BERTH_VM_KEEP:-0}
finish() {
	if [[ $keep == 1 ]]; then
		log "run directory kept: $run (console.log, share/out/)"
	else
		rm -rf "$run"
	fi
}
trap finish EXIT

# 3. What the guest runs.
e2e_run=${CGROUPV2_RUN:?set CGROUPV2_RUN (the Makefile names the set)}
log "building berth and the test binaries"
go=${GO:-go}
nice -n 10 "$go" build -o "$share/bin/berth" ./cmd/berth || {
	keep=1
	fail "go build ./cmd/berth"
}
nice -n 10 "$go" test -c -o "$share/bin/e2e.test" ./test/e2e || {
	keep=1
	fail "go test -c ./test/e2e"
}
mapfile -t tests < <("$share/bin/e2e.test" -test.list "$e2e_run" | grep '^Test')
((${#tests[@]})) || fail "CGROUPV2_RUN=$e2e_run selects no test in test/e2e"
log "${#tests[@]} tests: ${tests[*]}"
kubelet_run=
if [[ ${CGROUPV2_KUBELET:-1} == 1 ]]; then
	kubelet_run='^TestSystemdNode$'
	kubelet=$(hack/build-kubelet.sh) || fail "building kubelet (hack/build-kubelet.sh)"
	cp -l "$kubelet" "$share/bin/kubelet" 2>/dev/null || cp "$kubelet" "$share/bin/kubelet"
	(cd test/kubelet && nice -n 10 "$go" test -c -o "$share/bin/kubelet.test" .) || {
		keep=1
		fail "go test -c ./test/kubelet"
	}
	log "and TestSystemdNode (test/kubelet) with $("$kubelet" --version)"
fi
hack/build-test-images.sh unix:///var/run/docker.sock || fail "building the test images (hack/build-test-images.sh)"
DOCKER_HOST=unix:///var/run/docker.sock docker save -o "$share/images/busybox.tar" berth-test/busybox:latest ||
	fail "docker save berth-test/busybox:latest"
cp hack/vm/guest.sh "$share/guest.sh"
{
	printf 'E2E_RUN=%q\n' "$e2e_run"
	printf 'E2E_PARALLEL=%q\n' "${CGROUPV2_PARALLEL:-2}"
	printf 'E2E_TIMEOUT=%q\n' "${CGROUPV2_TIMEOUT:-60m}"
	printf 'KUBELET_RUN=%q\n' "$kubelet_run"
	printf 'export BERTH_TEST_TIMEOUT_SCALE=%q\n' "${CGROUPV2_SCALE:-4}"
} >"$share/env"

# 4. Boot. Software emulation unless the CPU offers VMX/SVM and /dev/kvm
# opens: the paravirtual KVM of some cloud machines has /dev/kvm but no
# VMX, and cannot run a stock kernel at speed.
accel=(-accel tcg,thread=multi,tb-size=256 -cpu max)
if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -w /dev/kvm ]]; then
	accel=(-accel kvm -cpu host,-arch-capabilities)
fi
qemu-img create -q -f qcow2 -F raw -b "$image/rootfs.img" "$run/overlay.qcow2" || fail "qemu-img create"
vm_timeout=${BERTH_VM_TIMEOUT:-5400}
log "booting the VM (${accel[1]%%,*}; console: $run/console.log; up to ${vm_timeout}s)"
t1=$SECONDS
set +e
timeout -s KILL "$vm_timeout" nice -n 10 qemu-system-x86_64 \
	"${accel[@]}" -smp 2 -m 4096 \
	-nodefaults -no-user-config -display none -no-reboot \
	-serial "file:$run/console.log" -monitor none \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw systemd.unified_cgroup_hierarchy=1 psi=1 panic=-1 loglevel=4 mitigations=off" \
	-drive "file=$run/overlay.qcow2,if=virtio,format=qcow2,cache=unsafe" \
	-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
	-nic none
qemu_rc=$?
set -e
t_vm=$((SECONDS - t1))
log "the VM ran ${t_vm}s (qemu exit $qemu_rc); image ${t_image}s"

# 5. Results: one line per selected test; one that never reported failed.
passed=0
failed=0
# report LOG RCFILE TEST...: a line per test from a go test -v log.
report() {
	local log=$1 rcfile=$2 t line rc
	shift 2
	for t in "$@"; do
		line=$(grep -E "^--- (PASS|FAIL|SKIP): $t " "$log" 2>/dev/null | tail -1 || true)
		case $line in
		"--- PASS"*)
			echo "PASS $t ${line##* }"
			passed=$((passed + 1))
			;;
		"--- FAIL"*)
			echo "FAIL $t ${line##* }"
			failed=$((failed + 1))
			;;
		"--- SKIP"*)
			echo "FAIL $t (skipped: a skip is a failure here)"
			failed=$((failed + 1))
			;;
		*)
			echo "FAIL $t (no result: the suite did not get to it or did not finish)"
			failed=$((failed + 1))
			;;
		esac
	done
	rc=$(cat "$rcfile" 2>/dev/null || echo none)
	if [[ $rc != 0 ]] && ! grep -qE '^--- FAIL' "$log" 2>/dev/null; then
		echo "FAIL $(basename "$log" .log) (exit status $rc)"
		failed=$((failed + 1))
	fi
}
report "$share/out/e2e.log" "$share/out/e2e.rc" "${tests[@]}"
if [[ -n $kubelet_run ]]; then
	report "$share/out/kubelet.log" "$share/out/kubelet.rc" TestSystemdNode
fi
if ((failed)); then
	keep=1
	for l in "$share/out/e2e.log" "$share/out/kubelet.log"; do
		if grep -qE '^\s*--- FAIL|^panic|^FAIL' "$l" 2>/dev/null; then
			echo "----- $(basename "$l"): the failing tests -----"
			grep -E -B2 -A60 '^\s*--- FAIL|^panic|^FAIL' "$l" | head -400 || true
		fi
	done
	echo "----- guest log -----"
	cat "$share/out/guest.log" 2>/dev/null || echo "(none: the test unit never ran)"
	echo "----- last lines of the console -----"
	tail -40 "$run/console.log" 2>/dev/null || true
fi
echo "$passed passed, $failed failed"
log "timings: image ${t_image}s, VM ${t_vm}s, total $((SECONDS - t0))s"
((failed == 0))
