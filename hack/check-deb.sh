#!/usr/bin/env bash
# Inspects a built Berth .deb: control fields, contents, conffiles,
# maintainer scripts, the binary, the default configuration, and the unit
# files through systemd-analyze verify. Does not install the package (the
# machine's Docker and /etc are shared). Usage: hack/check-deb.sh FILE.deb
set -euo pipefail
deb=${1:?usage: $0 FILE.deb}
fail() { printf 'check-deb: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'check-deb: ok: %s\n' "$*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

info=$(dpkg-deb -I "$deb")
for field in "Package: berth" "Depends: docker.io | docker-ce | docker-engine | moby-engine" "Recommends: containernetworking-plugins" "Architecture: $(go env GOARCH)"; do
	grep -qF "$field" <<<"$info" || fail "control lacks '$field':
$info"
done
ok "control fields"

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/berth ./lib/systemd/system/berth.service ./lib/systemd/system/berth.socket \
	./etc/berth/config.toml ./etc/default/berth ./var/lib/berth/ \
	./usr/share/doc/berth/README.md ./usr/share/doc/berth/install.md ./usr/share/doc/berth/configuration.md \
	./usr/share/doc/berth/kubeadm.md ./usr/share/doc/berth/migrate.md ./usr/share/doc/berth/troubleshooting.md; do
	grep -qE "[[:space:]]${path//./\\.}\$" <<<"$contents" || fail "package lacks $path:
$contents"
done
grep -E '[[:space:]]\./usr/bin/berth$' <<<"$contents" | grep -q '^-rwxr-xr-x' || fail "/usr/bin/berth is not mode 0755"
grep -E '[[:space:]]\./var/lib/berth/$' <<<"$contents" | grep -q '^drwx------' || fail "/var/lib/berth is not mode 0700"
ok "contents ($(wc -l <<<"$contents") entries)"

dpkg-deb -e "$deb" "$tmp/DEBIAN"
for f in /etc/berth/config.toml /etc/default/berth; do
	grep -qx "$f" "$tmp/DEBIAN/conffiles" || fail "$f is not a conffile"
done
for s in postinst prerm postrm; do
	[[ -x $tmp/DEBIAN/$s ]] || fail "maintainer script $s missing or not executable"
	sh -n "$tmp/DEBIAN/$s" || fail "maintainer script $s does not parse"
done
grep -q 'systemctl enable berth.socket berth.service' "$tmp/DEBIAN/postinst" || fail "postinst does not enable the units"
grep -q '/run/systemd/system' "$tmp/DEBIAN/postinst" || fail "postinst does not check for systemd"
ok "conffiles and maintainer scripts"

dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/bin/berth" version >/dev/null || fail "the packaged binary does not run"
"$tmp/root/usr/bin/berth" config default | cmp -s - "$tmp/root/etc/berth/config.toml" ||
	fail "/etc/berth/config.toml is not berth config default"
# The packaged configuration must load: serve validates it before anything
# else, so a bad key or value fails here without starting a server.
sed -E 's/^# ([a-z0-9-]+ = )/\1/' "$tmp/root/etc/berth/config.toml" >"$tmp/uncommented.toml"
"$tmp/root/usr/bin/berth" doctor --config "$tmp/uncommented.toml" --output json --socket "$tmp/none.sock" \
	--kubelet-config "$tmp/none" --kubeadm-flags-file "$tmp/none" --kubelet-defaults-file "$tmp/none" \
	--docker-daemon-json "$tmp/none" --leftover-paths "$tmp/none" >"$tmp/doctor.json" || [[ $? -le 2 ]] ||
	fail "berth doctor could not load the packaged configuration, uncommented"
ok "binary runs; packaged configuration is the default and loads"

# systemd-analyze verify checks ExecStart exists: point it at the unpacked
# binary. Any message at all (it only warns about unknown settings) fails.
mkdir -p "$tmp/units"
sed "s|/usr/bin/berth|$tmp/root/usr/bin/berth|" "$tmp/root/lib/systemd/system/berth.service" >"$tmp/units/berth.service"
cp "$tmp/root/lib/systemd/system/berth.socket" "$tmp/units/berth.socket"
out=$(cd "$tmp/units" && systemd-analyze verify --man=no berth.socket berth.service 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify: $out"
ok "systemd-analyze verify berth.socket berth.service"
# The maintainer scripts register Berth's runtime wrapper in daemon.json and
# unregister it, keeping the operator's settings: run their daemon.json step
# on a copy (BERTH_DOCKER_DAEMON_JSON; nothing else runs) with the unpacked
# binary, and refuse-not-overwrite an invalid file.
for s in postinst prerm; do
	sed "s|/usr/bin/berth|$tmp/root/usr/bin/berth|g" "$tmp/DEBIAN/$s" >"$tmp/$s"
done
operator='{"log-opts": {"max-size": "10m"}, "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "x-unknown": [1, null]}'
printf '%s\n' "$operator" >"$tmp/daemon.json"
chmod 0640 "$tmp/daemon.json"
BERTH_DOCKER_DAEMON_JSON=$tmp/daemon.json sh "$tmp/postinst" configure >/dev/null
python3 - "$tmp/daemon.json" <<'PY' || fail "postinst did not register berth-userns keeping the operator's settings: $(cat "$tmp/daemon.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["log-opts"] == {"max-size": "10m"} and d["x-unknown"] == [1, None]
assert d["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime"}
assert d["runtimes"]["berth-userns"] == {"path": "/usr/bin/berth", "runtimeArgs": ["oci-runtime"]}
PY
[[ $(stat -c %a "$tmp/daemon.json") == 640 ]] || fail "postinst changed daemon.json's mode"
BERTH_DOCKER_DAEMON_JSON=$tmp/daemon.json sh "$tmp/prerm" remove >/dev/null
python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == json.loads(sys.argv[2])' "$tmp/daemon.json" "$operator" ||
	fail "prerm did not restore the operator's daemon.json: $(cat "$tmp/daemon.json")"
printf '{"debug": true,\n' >"$tmp/bad.json"
BERTH_DOCKER_DAEMON_JSON=$tmp/bad.json sh "$tmp/postinst" configure >/dev/null 2>"$tmp/bad.err"
grep -q 'could not register' "$tmp/bad.err" || fail "postinst did not report an invalid daemon.json: $(cat "$tmp/bad.err")"
[[ $(cat "$tmp/bad.json") == '{"debug": true,' ]] || fail "postinst overwrote an invalid daemon.json"
ok "postinst registers berth-userns and prerm removes it, keeping the operator's daemon.json; an invalid one is left alone"
echo "check-deb: built $deb"
echo "check-deb: 6 passed, 0 failed"
