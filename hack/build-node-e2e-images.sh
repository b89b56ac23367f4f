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
#   e2e-test-images/busybox:1.37.0-2   upstream: busybox:1.37.0 (the
#       Docker library image: busybox built with upstream's defconfig,
#       every applet a hard link in /bin). Here busybox 1.35 built the same
#       way from the upstream tarball of Debian's source package with
#       Debian's security patches only (busybox_bin says why), linked
#       dynamically against Debian's glibc with the libraries it needs,
#       cached under /var/cache/berth; upstream's /etc/passwd and
#       /etc/group.
#   e2e-test-images/agnhost:2.66.1     upstream: alpine 3.21 + bash, curl,
#       nc, dig, iproute2 + /agnhost. Here the busybox root (sh, nc, wget,
#       nslookup, ip as applets, also at their alpine paths), Debian's
#       bash-static as /bin/bash, Debian's curl with its libraries,
#       agnhost 2.66.1 built from k8s.io/kubernetes/test/images/agnhost at
#       the suite's version, /agnhost-2, /uploads, porter's certificate,
#       user-defined-in-image (1000) in group-defined-in-image (50000),
#       and the fake registry's /var/registry with pause:testing (a copy
#       of the pause image below, fake_registry says how).
#       No dig or iperf: a spec that runs them fails for the image's sake
#       (docs/conformance.md counts it as environment).
#   e2e-test-images/agnhost:2.55       the same image: the suite's
#       previous agnhost; its specs only run and replace it.
#   e2e-test-images/nonewprivs:1.4     upstream: alpine + setuid-root
#       /usr/local/bin/nnp (prints its effective uid). Here the busybox
#       root + nnp built from the suite's source, setuid root.
#   e2e-test-images/nonroot:1.5        upstream: debian-base, USER 1234.
#       Here the busybox root, USER 1234.
#   e2e-test-images/glibc-dns-testing:2.1.1   upstream: debian
#       bookworm-slim + dnsutils (and coredns, which no spec here runs).
#       The specs run `sh -c "echo $(hostname)';'$(hostname -f)';'"`:
#       Debian's glibc resolving the pod's name through /etc/hosts. Here
#       Debian's dash as /bin/sh, Debian's hostname, bash-static as
#       /bin/bash, dig and nslookup from Debian's bind9-dnsutils, each with
#       its libraries, and Debian's nsswitch.conf. No coreutils.
#   e2e-test-images/nginx:1.27.0-2     upstream: nginx:1.27-alpine (the
#       Docker library image: nginx in the foreground, `nginx -g "daemon
#       off;"`, serving /usr/share/nginx/html on port 80 as user nginx
#       (101), its pid in /var/run/nginx.pid, logs to the container's
#       stdout and stderr, busybox's applets). The specs run it as a
#       long-running server (mirror pods, the host-PID and OOM-score
#       specs, which find it as a process named nginx and `cat
#       /var/run/nginx.pid` in it). Here the busybox root and Debian's
#       nginx (1.22, its mime.types from nginx-common) with its
#       libraries, and a configuration that does what upstream's does.
#   e2e-test-images/nginx:1.28.0-2     the same image: the suite's
#       "new" nginx, which only a test template names.
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
# from Debian's archive once (not installed: these go into images only).
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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# debs DIR PACKAGE... unpacks the packages' .debs into DIR.
debs() {
	local dir=$1 p
	shift
	mkdir -p "$dir"
	for p in "$@"; do
		dpkg-deb -x "$(deb "$p")" "$dir"
	done
}

# with_libs ROOT LIBDIR FILE... copies into ROOT the shared libraries FILE
# needs (ldd, looking in LIBDIR first: libraries unpacked from .debs, the
# rest from this Debian host).
with_libs() {
	local root=$1 libdir=$2 f lib
	shift 2
	for f in "$@"; do
		if LD_LIBRARY_PATH=$libdir ldd "$f" | grep -q 'not found'; then
			echo "build-node-e2e-images: $f needs libraries this host lacks:" >&2
			LD_LIBRARY_PATH=$libdir ldd "$f" | grep 'not found' >&2
			exit 1
		fi
		for lib in $(LD_LIBRARY_PATH=$libdir ldd "$f" | grep -o '/[^ ]*'); do
			local dest=$lib
			[[ $lib == "$libdir"/* ]] && dest=/usr/lib/$multiarch/${lib#"$libdir"/}
			[[ -e $root$dest ]] && continue
			mkdir -p "$root$(dirname "$dest")"
			cp -L "$lib" "$root$dest"
		done
	done
}

# busybox_bin prints the path of a busybox built as the upstream image's
# is, `make defconfig`, building it once into the cache. Debian's binary
# packages configure busybox their own way and leave out applets the specs
# run (nmeter, and top in the dynamic one); Debian's patches change what
# the specs see too (revert-9c143ce… and temp-deb-installer-hack make ash
# drop environment variables whose names are not shell identifiers, which
# upstream passes on: `sh -c env` must show a secret's data-1=value-1).
# So: the pristine upstream tarball of Debian's source package with only
# Debian's security fixes (its CVE-*.patch). The source comes through a
# private apt configuration with a deb-src entry for this release, so the
# system's apt is untouched.
busybox_bin() {
	local f
	f=$(ls "$cache"/busybox-*-defconfig 2>/dev/null | head -1 || true)
	if [[ -n $f ]]; then
		echo "$f"
		return
	fi
	local codename apt src p
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	apt=$work/apt
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
	cat >"$apt/sources.list" <<SOURCES
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $codename-security main
SOURCES
	local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
	local tool
	for tool in gcc make bzip2 xz patch; do
		if ! command -v "$tool" >/dev/null; then
			echo "build-node-e2e-images: building busybox needs $tool (hack/setup.sh installs it)" >&2
			exit 1
		fi
	done
	echo "build-node-e2e-images: building busybox from Debian's source package (a few minutes, once)" >&2
	if ! apt-get "${opts[@]}" update >"$apt/log" 2>&1 ||
		! (cd "$apt/src" && apt-get "${opts[@]}" source --download-only busybox) >>"$apt/log" 2>&1; then
		echo "build-node-e2e-images: cannot fetch Debian's busybox source package:" >&2
		cat "$apt/log" >&2
		exit 1
	fi
	(
		cd "$apt/src"
		tar -xjf busybox_*.orig.tar.bz2
		tar -xJf busybox_*.debian.tar.xz
		cd busybox-*/
		for p in $(grep '^CVE-' ../debian/patches/series); do
			patch -p1 <"../debian/patches/$p"
		done
		make defconfig
		nice -n 10 make -j"$(nproc)" busybox
	) >>"$apt/log" 2>&1 || {
		echo "build-node-e2e-images: building busybox failed:" >&2
		tail -30 "$apt/log" >&2
		exit 1
	}
	src=$(ls -d "$apt"/src/busybox-*/)
	f=$cache/$(basename "$src")-defconfig
	cp "$src/busybox" "$f.tmp"
	mv "$f.tmp" "$f"
	echo "$f"
}
busybox=$(busybox_bin)
debs "$work/debs" bash-static curl libcurl4 dash hostname \
	bind9-dnsutils bind9-libs libjemalloc2 libuv1 libmaxminddb0 libfstrm0 liblmdb0 \
	nginx nginx-common
multiarch=$(uname -m)-linux-gnu
libdir=$work/debs/usr/lib/$multiarch

# busybox_root DIR makes DIR the busybox image's root: as in the upstream
# image, every applet a hard link to /bin/busybox in /bin.
busybox_root() {
	local root=$1
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,proc,sys,dev,var/www,var/spool/mail,run}
	chmod 1777 "$root/tmp"
	cp "$busybox" "$root/bin/busybox"
	with_libs "$root" "$libdir" "$root/bin/busybox"
	local applet
	for applet in $("$root/bin/busybox" --list); do
		[[ $applet == busybox ]] && continue
		ln -f "$root/bin/busybox" "$root/bin/$applet"
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
# removes the local tag; with stop_signal set, the image's STOPSIGNAL.
import() {
	local root=$1 name=$2
	shift 2
	local args=()
	for c in "$@"; do
		args+=(--change "$c")
	done
	tar -C "$root" --numeric-owner -c . | docker import "${args[@]}" - "$registry/$name" >/dev/null
	# docker import takes no STOPSIGNAL; a one-line build adds it (no COPY,
	# so no setuid bits lost).
	if [[ -n ${stop_signal:-} ]]; then
		printf 'FROM %s\nSTOPSIGNAL %s\n' "$registry/$name" "$stop_signal" |
			docker build -q -t "$registry/$name" - >/dev/null
	fi
	docker push "$registry/$name" >/dev/null
	docker rmi "$registry/$name" >/dev/null
	echo "build-node-e2e-images: pushed $registry/$name" >&2
}

# fake_registry DIR REPO TAG AS copies REPO:TAG from the local registry
# into DIR in the layout agnhost's fake-registry-server serves (upstream's
# agnhost image has pause 3.10.2 from registry.k8s.io there, tagged
# "testing": the private-registry spec runs `agnhost fake-registry-server
# --private` as a host-network pod and pulls localhost:5000/pause:testing
# from it with a pull secret). Each manifest and blob lives at
# <kind>/sha256/<first two hex digits>/<hex>/data, and a tag is a file
# holding its manifest's digest.
fake_registry() {
	local dir=$1/$2 m digest d
	m=$(mktemp)
	curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-o "$m" "http://$registry/v2/$2/manifests/$3"
	digest=sha256:$(sha256sum <"$m" | cut -d' ' -f1)
	mkdir -p "$dir/manifests/sha256/${digest:7:2}/${digest:7}"
	mv "$m" "$dir/manifests/sha256/${digest:7:2}/${digest:7}/data"
	echo "$digest" >"$dir/manifests/$4"
	# A schema 2 manifest names only its config's and layers' digests.
	for d in $(grep -o 'sha256:[0-9a-f]\{64\}' "$dir/manifests/sha256/${digest:7:2}/${digest:7}/data"); do
		mkdir -p "$dir/blobs/sha256/${d:7:2}/${d:7}"
		curl -fsS -o "$dir/blobs/sha256/${d:7:2}/${d:7}/data" "http://$registry/v2/$2/blobs/$d"
	done
	chmod -R a+rX "$1"
}

path='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

busybox_root "$work/busybox"
import "$work/busybox" e2e-test-images/busybox:1.37.0-2 "$path" 'CMD ["sh"]'

# pause first: agnhost's fake registry serves a copy of it.
mkdir -p "$work/pause"
tar -C "$work/pause" -xf "$pause_tar"
import "$work/pause" pause:3.10.2 'ENTRYPOINT ["/pause"]' 'USER 65535:65535'

cp -a "$work/busybox" "$work/agnhost"
r=$work/agnhost
fake_registry "$r/var/registry" pause 3.10.2 testing
mkdir -p "$r/uploads"
# alpine's busybox has its applets at their own paths (/usr/bin/wget,
# /sbin/ip); the specs' absolute paths into agnhost are alpine's.
for applet in $("$r/bin/busybox" --list-full); do
	[[ -e $r/$applet ]] || ln "$r/bin/busybox" "$r/$applet"
done
rm -f "$r/bin/bash" "$r/usr/bin/bash"
cp "$work/debs/bin/bash-static" "$r/bin/bash"
ln -s /bin/bash "$r/usr/bin/bash"
rm -f "$r/usr/bin/curl"
cp "$work/debs/usr/bin/curl" "$r/usr/bin/curl"
with_libs "$r" "$libdir" "$r/usr/bin/curl"
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

r=$work/glibc-dns-testing
mkdir -p "$r"/{bin,usr/bin,etc,tmp,root,home,proc,sys,dev,run,var/tmp}
chmod 1777 "$r/tmp" "$r/var/tmp"
cp "$work/debs/bin/dash" "$work/debs/bin/hostname" "$r/bin/"
ln -s dash "$r/bin/sh"
cp "$work/debs/bin/bash-static" "$r/bin/bash"
cp "$work/debs/usr/bin/dig" "$work/debs/usr/bin/nslookup" "$r/usr/bin/"
with_libs "$r" "$libdir" "$r/bin/dash" "$r/bin/hostname" "$r/usr/bin/dig" "$r/usr/bin/nslookup"
# Debian's own defaults, as base-passwd and libc-bin install them.
cp /usr/share/base-passwd/passwd.master "$r/etc/passwd"
cp /usr/share/base-passwd/group.master "$r/etc/group"
cp /usr/share/libc-bin/nsswitch.conf "$r/etc/nsswitch.conf"
import "$r" e2e-test-images/glibc-dns-testing:2.1.1 "$path" 'CMD ["bash"]'

cp -a "$work/busybox" "$work/nginx"
r=$work/nginx
mkdir -p "$r"/{usr/sbin,etc/nginx/conf.d,usr/share/nginx/html,var/log/nginx,var/cache/nginx,var/lib/nginx}
cp "$work/debs/usr/sbin/nginx" "$r/usr/sbin/nginx"
with_libs "$r" "$libdir" "$r/usr/sbin/nginx"
cp "$work/debs/etc/nginx/mime.types" "$r/etc/nginx/"
# Debian's nginx keeps its pid in /run and its temporary files in
# /var/lib/nginx; alpine's /var/run is /run too.
ln -s /run "$r/var/run"
ln -sf /dev/stdout "$r/var/log/nginx/access.log"
ln -sf /dev/stderr "$r/var/log/nginx/error.log"
echo 'nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin' >>"$r/etc/passwd"
echo 'nginx:x:101:nginx' >>"$r/etc/group"
cat >"$r/etc/nginx/nginx.conf" <<'CONF'
user nginx;
worker_processes auto;
error_log /var/log/nginx/error.log notice;
pid /var/run/nginx.pid;

events {
	worker_connections 1024;
}

http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log /var/log/nginx/access.log;
	sendfile on;
	keepalive_timeout 65;
	include /etc/nginx/conf.d/*.conf;
}
CONF
cat >"$r/etc/nginx/conf.d/default.conf" <<'CONF'
server {
	listen 80;
	listen [::]:80;
	server_name localhost;
	location / {
		root /usr/share/nginx/html;
		index index.html index.htm;
	}
}
CONF
cat >"$r/usr/share/nginx/html/index.html" <<'HTML'
<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
</body>
</html>
HTML
for tag in 1.27.0-2 1.28.0-2; do
	stop_signal=SIGQUIT import "$r" "e2e-test-images/nginx:$tag" "$path" 'EXPOSE 80' \
		'CMD ["nginx", "-g", "daemon off;"]'
done

