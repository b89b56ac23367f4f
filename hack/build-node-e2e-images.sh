#!/usr/bin/env bash
# Builds the images Kubernetes' node conformance specs run (make
# test-node-e2e, docs/conformance.md), locally, into the Docker daemon at
# $1, pushes them to the registry at $2 (host:port) under the names the
# suite asks for once KUBE_TEST_REPO_LIST maps registry.k8s.io there, and
# removes the local copies (the specs pull them through Berth). Nothing is
# pulled from any registry; the programs come from $3 (hack/build-node-e2e.sh:
# agnhost, nnp) and $4 (a tar of Berth's pause program, /pause).
#
# Each image is built FROM scratch as a root filesystem tarball (docker
# import keeps setuid bits, which Docker 20.10's legacy builder drops on
# COPY) and is faithful to what the specs run in it:
#
#   e2e-test-images/busybox:1.37.0-2   upstream: busybox:1.37.0. Here
#       Debian's busybox 1.35 (dynamic, every applet a hard link, as in
#       hack/build-test-images.sh) with the upstream image's /etc/passwd
#       and /etc/group.
#   e2e-test-images/agnhost:2.66.1     upstream: alpine 3.21 + bash, curl,
#       nc, dig, iproute2 + /agnhost. Here the busybox root (sh, nc, wget,
#       nslookup, ip as applets), Debian's bash-static as /bin/bash,
#       agnhost 2.66.1 built from k8s.io/kubernetes/test/images/agnhost at
#       the suite's version, /agnhost-2, /uploads, porter's certificate,
#       user-defined-in-image (1000) in group-defined-in-image (50000).
#       No curl, dig or iperf: a spec that runs them fails for the image's
#       sake (docs/conformance.md counts it as environment).
#   e2e-test-images/agnhost:2.55       the same image: the suite's
#       previous agnhost; its specs only run and replace it.
#   e2e-test-images/nonewprivs:1.4     upstream: alpine + setuid-root
#       /usr/local/bin/nnp (prints its effective uid). Here the busybox
#       root + nnp built from the suite's source, setuid root.
#   e2e-test-images/nonroot:1.5        upstream: debian-base, USER 1234.
#       Here the busybox root, USER 1234.
#   pause:3.10.2                       upstream: /pause, USER 65535:65535.
#       Here Berth's own pause program, the same user.
set -euo pipefail
host=$1
registry=$2
bins=$3
pause_tar=$4
export DOCKER_HOST=$host

cache=/var/cache/berth
mkdir -p "$cache"
# deb PACKAGE prints the path of PACKAGE's .deb in the cache, downloading it
# from Debian's archive once (not installed: busybox conflicts with the
# busybox-static the other suites use).
deb() {
	local f
	f=$(ls "$cache/$1"_*.deb 2>/dev/null | head -1 || true)
	if [[ -z $f ]]; then
		(cd "$cache" && apt-get download "$1" >/dev/null 2>&1) || true
		f=$(ls "$cache/$1"_*.deb 2>/dev/null | head -1 || true)
	fi
	if [[ -z $f ]]; then
		echo "build-node-e2e-images: cannot fetch Debian's $1 package (apt-get download $1)" >&2
		exit 1
	fi
	echo "$f"
}
busybox_deb=$(deb busybox)
bash_deb=$(deb bash-static)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# busybox_root DIR makes DIR the busybox image's root.
busybox_root() {
	local root=$1
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,proc,sys,dev,var/www,var/spool/mail,run}
	chmod 1777 "$root/tmp"
	mkdir -p "$work/busybox-deb"
	[[ -e $work/busybox-deb/bin/busybox ]] || dpkg-deb -x "$busybox_deb" "$work/busybox-deb"
	cp "$work/busybox-deb/bin/busybox" "$root/bin/busybox"
	local lib applet
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
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
	cat >"$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
GROUP
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# import DIR NAME CHANGE... imports DIR as $registry/NAME, pushes it and
# removes the local tag.
import() {
	local root=$1 name=$2
	shift 2
	local args=()
	for c in "$@"; do
		args+=(--change "$c")
	done
	tar -C "$root" --numeric-owner -c . | docker import "${args[@]}" - "$registry/$name" >/dev/null
	docker push "$registry/$name" >/dev/null
	docker rmi "$registry/$name" >/dev/null
	echo "build-node-e2e-images: pushed $registry/$name" >&2
}

path='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

busybox_root "$work/busybox"
import "$work/busybox" e2e-test-images/busybox:1.37.0-2 "$path" 'CMD ["sh"]'

cp -a "$work/busybox" "$work/agnhost"
r=$work/agnhost
mkdir -p "$work/bash-deb" "$r/uploads"
dpkg-deb -x "$bash_deb" "$work/bash-deb"
rm -f "$r/bin/bash"
cp "$work/bash-deb/bin/bash-static" "$r/bin/bash"
ln -sf /bin/bash "$r/usr/bin/bash"
cp "$bins/agnhost" "$r/agnhost"
ln -s agnhost "$r/agnhost-2"
porter=$(cd "$(dirname "$0")/../test/nodee2e/build" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/porter
cp "$porter/localhost.crt" "$porter/localhost.key" "$r/"
chmod 0644 "$r/localhost.crt" "$r/localhost.key"
echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$r/etc/passwd"
echo 'user-defined-in-image:x:1000:' >>"$r/etc/group"
echo 'group-defined-in-image:x:50000:user-defined-in-image' >>"$r/etc/group"
mkdir -p "$r/home/user-defined-in-image"
chown 1000:1000 "$r/home/user-defined-in-image"
for tag in 2.66.1 2.55; do
	import "$r" "e2e-test-images/agnhost:$tag" "$path" 'ENTRYPOINT ["/agnhost"]' 'CMD ["pause"]' \
		'EXPOSE 80 8080 8081 9376 5000'
done

cp -a "$work/busybox" "$work/nonewprivs"
mkdir -p "$work/nonewprivs/usr/local/bin"
cp "$bins/nnp" "$work/nonewprivs/usr/local/bin/nnp"
chmod 4755 "$work/nonewprivs/usr/local/bin/nnp"
import "$work/nonewprivs" e2e-test-images/nonewprivs:1.4 "$path" 'CMD ["nnp"]'

import "$work/busybox" e2e-test-images/nonroot:1.5 "$path" 'USER 1234' 'CMD ["sh"]'

mkdir -p "$work/pause"
tar -C "$work/pause" -xf "$pause_tar"
import "$work/pause" pause:3.10.2 'ENTRYPOINT ["/pause"]' 'USER 65535:65535'
