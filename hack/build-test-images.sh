#!/usr/bin/env bash
# Builds the images the tests use, locally, into the Docker daemon at $1
# (default: the system daemon). Nothing is pulled from any registry.
#
#   berth-test/busybox:latest  Debian's (dynamically linked) busybox with its
#                              libraries and every applet as a hard link, so
#                              masking or exec'ing one applet behaves as in
#                              the upstream busybox image; /etc/passwd and
#                              /etc/group with test users. (busybox-static's
#                              wget crashes on connection errors, and its
#                              applets run inside the shell.) The .deb is
#                              fetched from Debian's archive, not installed:
#                              it conflicts with busybox-static.
set -euo pipefail

host=${1:-unix:///var/run/docker.sock}
image=berth-test/busybox:latest
export DOCKER_HOST=$host

cache=/var/cache/berth
mkdir -p "$cache"
deb=$(ls "$cache"/busybox_*.deb 2>/dev/null | head -1 || true)
if [[ -z $deb ]]; then
	(cd "$cache" && apt-get download busybox >/dev/null 2>&1) || true
	deb=$(ls "$cache"/busybox_*.deb 2>/dev/null | head -1 || true)
fi
if [[ -z $deb ]]; then
	echo "cannot fetch Debian's busybox package (apt-get download busybox)" >&2
	exit 1
fi

# The image is rebuilt when this script or busybox changes.
# The contents only: sha256sum also prints the paths, which differ by how
# the script was called.
stamp=$(cat "$0" "$deb" | sha256sum | cut -c1-12)
if [[ $(docker image inspect -f '{{index .Config.Labels "berth.test.stamp"}}' "$image" 2>/dev/null) == "$stamp" ]]; then
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home/app,proc,sys,dev,var/www,run}
chmod 1777 "$root/tmp"
dpkg-deb -x "$deb" "$work/deb"
cp "$work/deb/bin/busybox" "$root/bin/busybox"
# Its shared libraries, at the paths the dynamic linker looks in.
for lib in $(ldd "$root/bin/busybox" | grep -o '/[^ ]*'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
for applet in $("$root/bin/busybox" --list-full); do
	[[ $applet == bin/busybox ]] && continue
	mkdir -p "$root/$(dirname "$applet")"
	ln -f "$root/bin/busybox" "$root/$applet"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1234:1234:app:/home/app:/bin/sh
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
app:x:1234:
extra:x:5555:app
nogroup:x:65534:
GROUP
echo 'hello from berth-test' >"$root/var/www/index.html"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chown 1234:1234 "$root/home/app"

tar -C "$root" -c . | docker import \
	--change 'CMD ["/bin/sh"]' \
	--change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
	--change "LABEL berth.test.stamp=$stamp" \
	- "$image" >/dev/null
echo "built $image in $host" >&2
