#!/usr/bin/env bash
# Builds the virtual machine image `make test-cgroupv2` boots: Debian
# bookworm from Debian's own packages (debootstrap, no other source), with
# systemd as init, cgroup v2 only, and Docker on the systemd cgroup driver.
# Prints the image's directory on stdout; it holds
#
#   vmlinuz     the kernel, for QEMU's direct kernel boot
#   initrd.img  an initramfs with only the modules a virtio disk needs
#   rootfs.img  the root filesystem (raw ext4), booted read-only through a
#               throw-away qcow2 overlay per boot
#
# The image is cached under ~/.cache/berth/vm-bookworm-<key>/ (BERTH_CACHE_DIR
# moves the cache), <key> being a hash of this script, which holds the
# package list and everything that shapes the image: it is rebuilt only when
# they change. Building takes 6-7 minutes on two cores (about 190 MB of
# packages from the apt mirror). Needs root.
#
# What the image runs is not in it: the tests, berth and the script that runs
# them come in on a 9p share (tag "share", mounted at /mnt/share) each boot,
# and berth-vm-test.service runs /mnt/share/guest.sh once Docker is up, then
# powers the machine off (hack/vm/test-cgroupv2.sh).
set -euo pipefail

log() { printf 'vm-image: %s\n' "$*" >&2; }

# The packages on top of debootstrap's minbase. Recommends are not
# installed, so anything Docker merely recommends is named here: without
# apparmor, Docker cannot load its default profile and every container
# fails to start.
packages=(
	systemd systemd-sysv udev dbus kmod
	linux-image-amd64 initramfs-tools
	apparmor docker.io containerd runc tini
	containernetworking-plugins iproute2 iptables procps
	busybox-static
)
suite=bookworm
mirror=${BERTH_VM_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

key=$(sha256sum "$0" | cut -c1-12)
cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
out=$cache/vm-$suite-$key
if [[ -f $out/rootfs.img && -f $out/vmlinuz && -f $out/initrd.img ]]; then
	echo "$out"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (debootstrap)"
	exit 1
fi
for tool in debootstrap mkfs.ext4; do
	if ! command -v "$tool" >/dev/null; then
		log "$tool is missing (hack/vm/test-cgroupv2.sh installs it)"
		exit 1
	fi
done

mkdir -p "$cache"
work=$(mktemp -d "$cache/.vm-build.XXXXXX")
root=$work/rootfs
cleanup() {
	# debootstrap mounts these inside the tree; a failed build may leave them.
	for m in proc sys dev/pts dev; do
		umount -l "$root/$m" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# Set before the kernel package comes in, so that its initramfs is built
# once, small: the default (MODULES=most) carries every driver and takes
# minutes to build here.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/berth-vm.conf"

start=$SECONDS
log "debootstrap $suite from $mirror (${#packages[@]} packages on minbase; minutes)"
include=$(
	IFS=,
	echo "${packages[*]}"
)
# The downloaded packages are kept: a rebuild fetches only what changed.
mkdir -p "$cache/debootstrap-debs"
if ! debootstrap --variant=minbase --cache-dir="$cache/debootstrap-debs" --include="$include" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
	log "debootstrap failed; its log:"
	tail -40 "$work/debootstrap.log" >&2
	tail -40 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
	exit 1
fi
log "debootstrap done in $((SECONDS - start))s"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

echo berth-vm >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tberth-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# A fixed machine id: without one, first boot runs systemd-firstboot.
tr -d - </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
cat >"$root/etc/fstab" <<'EOF'
/dev/vda  /           ext4  rw,noatime,errors=remount-ro  0 1
share     /mnt/share  9p    trans=virtio,version=9p2000.L,msize=1048576,cache=loose,nofail,x-systemd.requires=systemd-modules-load.service  0 0
tmpfs     /tmp        tmpfs defaults,size=1g  0 0
EOF
mkdir -p "$root/mnt/share"
printf '9p\n9pnet_virtio\noverlay\nbr_netfilter\n' >"$root/etc/modules-load.d/berth-vm.conf"

mkdir -p "$root/etc/docker"
cat >"$root/etc/docker/daemon.json" <<'EOF'
{
  "exec-opts": ["native.cgroupdriver=systemd"],
  "storage-driver": "overlay2",
  "log-level": "warn"
}
EOF

cat >"$root/etc/systemd/system/berth-vm-test.service" <<'EOF'
[Unit]
Description=Berth tests handed in on the 9p share (hack/vm/test-cgroupv2.sh)
After=docker.service containerd.service mnt-share.mount
Wants=docker.service
RequiresMountsFor=/mnt/share
# The machine exists to run this once: power off when it ends, either way.
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=simple
ExecStart=/bin/bash /mnt/share/guest.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable berth-vm-test.service docker.service containerd.service >/dev/null 2>&1
# Nothing else should compete for two emulated CPUs.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
	fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service systemd-logind.service \
	getty@tty1.service serial-getty@ttyS0.service >/dev/null 2>&1
# Docker needs none of containerd's CRI plugin, which would look for CNI
# configurations at every start.
mkdir -p "$root/etc/containerd"
printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' >"$root/etc/containerd/config.toml"

# The initramfs: only what mounting a virtio disk's ext4 needs.
kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -1)")
printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >"$root/etc/initramfs-tools/modules"
in_root mkinitramfs -o /boot/initrd.berth "$kver" >"$work/mkinitramfs.log" 2>&1 || {
	log "mkinitramfs failed:"
	cat "$work/mkinitramfs.log" >&2
	exit 1
}

mkdir -p "$work/out"
cp "$root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
mv "$root/boot/initrd.berth" "$work/out/initrd.img"
# The packaged initrd is not used (direct kernel boot); drop it and the
# package cache to keep the image small.
rm -f "$root"/boot/initrd.img-*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root/debootstrap"
for m in proc sys dev/pts dev; do
	umount -l "$root/$m" 2>/dev/null || true
done

# 6 GiB, sparse: Docker's images and containers go on it (through the
# per-boot overlay, which grows only by what a run writes).
# (mkfs.ext4 reports on stdout, which carries only the result here.)
mkfs.ext4 -q -L berth-root -E root_owner=0:0 -d "$root" "$work/out/rootfs.img" 6G >&2
printf '%s\n' "suite=$suite" "kernel=$kver" "mirror=$mirror" "packages=${packages[*]}" >"$work/out/manifest"
rm -rf "$out"
mv "$work/out" "$out"
log "built $out in $((SECONDS - start))s (kernel $kver)"
echo "$out"
