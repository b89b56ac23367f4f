package nodee2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/test/framework"
)

// imageCheck is something the specs do in one of the suite's images and
// what it must print: the images are stand-ins built locally
// (hack/build-node-e2e-images.sh), and a stand-in that lacks what a spec
// runs would fail the spec for the image's sake, not Berth's.
type imageCheck struct {
	image string   // below the registry
	flags []string // docker run flags
	args  []string // after the image
	// exec, when set, is run in the container (started detached with its
	// image's own command unless args says otherwise) until it prints
	// want: for the images the specs run as servers.
	exec []string
	// inspect, when set, is a docker image inspect format printed instead
	// of running the image: for what the image's config must say.
	inspect string
	want    string // a line of the output
}

var imageChecks = []imageCheck{
	// The Container Runtime, Pods and probe specs run shell scripts.
	{image: "e2e-test-images/busybox:1.37.0-2", args: []string{"sh", "-c", "echo ok; ls /bin/ls >/dev/null"}, want: "ok"},
	{image: "e2e-test-images/busybox:1.37.0-2", args: []string{"sh", "-c", "id -u nobody"}, want: "65534"},
	// The Secrets and ConfigMap specs print `sh -c env` with variables
	// whose names are not shell identifiers (upstream's ash passes them on).
	{image: "e2e-test-images/busybox:1.37.0-2", flags: []string{"-e", "data-1=value-1"},
		args: []string{"sh", "-c", "env"}, want: "data-1=value-1"},
	// The Containers Lifecycle specs time-stamp their logs with
	// `date +%FT$(nmeter -d0 '%3t' | head -n1)Z`.
	{image: "e2e-test-images/busybox:1.37.0-2", args: []string{"sh", "-c",
		`t=$(date +%FT$(nmeter -d0 '%3t' | head -n1)Z); case $t in ????-??-??T??:??:??.???Z) echo stamped;; *) echo "$t";; esac`},
		want: "stamped"},
	// The PID namespace specs run /bin/top and look for it with pidof.
	{image: "e2e-test-images/busybox:1.37.0-2", args: []string{"sh", "-c",
		"/bin/top >/dev/null & sleep 1; /bin/pidof top >/dev/null && echo top"}, want: "top"},
	// agnhost's specs run `/bin/bash -c …` and agnhost's own commands.
	{image: "e2e-test-images/agnhost:2.66.1", flags: []string{"--entrypoint", "/bin/bash"},
		args: []string{"-c", "echo ${BASH_VERSION%%.*}"}, want: "5"},
	{image: "e2e-test-images/agnhost:2.66.1", flags: []string{"--tmpfs", "/scratch"},
		args: []string{"mounttest", "--fs_type=/scratch"}, want: `mount type of "/scratch": tmpfs`},
	{image: "e2e-test-images/agnhost:2.55", flags: []string{"--entrypoint", "/bin/sh"},
		args: []string{"-c", "id -G user-defined-in-image"}, want: "1000 50000"},
	// The networking specs and the prestop hook reach agnhost's netexec
	// with curl over http.
	{image: "e2e-test-images/agnhost:2.66.1", flags: []string{"--entrypoint", "/bin/sh", "--hostname", "curl-check"},
		args: []string{"-c", "/agnhost netexec --http-port=8080 >/dev/null 2>&1 & sleep 2; curl -g -q -s http://127.0.0.1:8080/hostName; echo"},
		want: "curl-check"},
	// The private-registry spec runs agnhost's fake registry with
	// --private and pulls localhost:5000/pause:testing from it with
	// user:password: the tag must lead to a manifest whose blobs are there
	// under their digests, and nothing may be served without credentials.
	{image: "e2e-test-images/agnhost:2.66.1", args: []string{"fake-registry-server", "--private"},
		exec: []string{"sh", "-c", `get() { curl -fsSL -u user:password "http://127.0.0.1:5000/v2/pause/$1"; }
m=$(get manifests/testing) || exit 1
for d in $(echo "$m" | grep -o 'sha256:[0-9a-f]\{64\}'); do
	[ "$(get blobs/$d | sha256sum | cut -d' ' -f1)" = "${d#sha256:}" ] || { echo "blob $d"; exit 1; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/pause/manifests/testing)" = 401 ] && echo "$m" | grep -q '"mediaType"' && echo served`},
		want: "served"},
	// The hostname specs resolve the pod's FQDN through kubelet's
	// /etc/hosts with glibc: `hostname -f`.
	{image: "e2e-test-images/glibc-dns-testing:2.1.1", flags: []string{"--hostname", "hostfqdn"},
		args: []string{"sh", "-c", `echo "10.9.8.7 hostfqdn.t.ns.svc.cluster.local hostfqdn" >/etc/hosts; echo $(hostname)';'$(hostname -f)';'`},
		want: "hostfqdn;hostfqdn.t.ns.svc.cluster.local;"},
	// The DNS specs query with dig.
	{image: "e2e-test-images/glibc-dns-testing:2.1.1",
		args: []string{"sh", "-c", `v=$(dig -v 2>&1); case $v in "DiG 9."*) echo dig;; *) echo "$v";; esac`}, want: "dig"},
	// The nonewprivs specs read the effective uid of a setuid-root program.
	{image: "e2e-test-images/nonewprivs:1.4", flags: []string{"--user", "1000"}, want: "Effective uid: 0"},
	// The MirrorPod specs run nginx with its own command and wait for it
	// to keep running; the host-PID specs `cat /var/run/nginx.pid` in it
	// and find it on the host as a process named nginx; a test template
	// names the newer tag.
	{image: "e2e-test-images/nginx:1.27.0-2", exec: []string{"wget", "-qO-", "http://127.0.0.1:80/"},
		want: "<h1>Welcome to nginx!</h1>"},
	{image: "e2e-test-images/nginx:1.27.0-2", exec: []string{"sh", "-c",
		`p=$(/bin/cat /var/run/nginx.pid) && [ "$(cat /proc/$p/comm)" = nginx ] && ps -o user,comm | grep -q '^nginx *nginx' && echo pid`},
		want: "pid"},
	// Stopped as upstream's is: gracefully.
	{image: "e2e-test-images/nginx:1.27.0-2", inspect: "{{.Config.StopSignal}}", want: "SIGQUIT"},
	{image: "e2e-test-images/nginx:1.28.0-2", exec: []string{"wget", "-qO-", "http://127.0.0.1:80/"},
		want: "<h1>Welcome to nginx!</h1>"},
	// The nonroot specs rely on the image's own USER.
	{image: "e2e-test-images/nonroot:1.5", args: []string{"id", "-u"}, want: "1234"},
}

// checkImages runs every imageCheck through the private daemon, pulling
// from the registry as the specs will.
func checkImages(t *testing.T, host, registry string) {
	docker := func(args ...string) ([]byte, error) {
		cmd := exec.Command("docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
		return cmd.CombinedOutput()
	}
	for _, c := range imageChecks {
		run := "--rm"
		if c.exec != nil {
			run = "-d"
		}
		args := append(append([]string{"run", run, "--pull=always"}, c.flags...), registry+"/"+c.image)
		args = append(args, c.args...)
		if c.inspect != "" {
			if out, err := docker("pull", registry+"/"+c.image); err != nil {
				t.Errorf("docker pull %s: %v: %s", c.image, err, out)
				continue
			}
			args = []string{"image", "inspect", "-f", c.inspect, registry + "/" + c.image}
		}
		out, err := docker(args...)
		if c.exec != nil && err == nil {
			// The pull's progress comes first; the id is the last line.
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			id := strings.TrimSpace(lines[len(lines)-1])
			args = append([]string{"exec", id}, c.exec...)
			// A server takes a moment to listen.
			for deadline := time.Now().Add(10 * time.Second); ; {
				out, err = docker(args...)
				if (err == nil && hasLine(out, c.want)) || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if logs, _ := docker("logs", id); err != nil || !hasLine(out, c.want) {
				out = append(out, "\ncontainer's log:\n"...)
				out = append(out, logs...)
			}
			if rm, err := docker("rm", "-f", id); err != nil {
				t.Errorf("docker rm -f %s: %v: %s", id, err, rm)
			}
		}
		if err != nil || !hasLine(out, c.want) {
			t.Errorf("docker %s: %v: want a line %q, got:\n%s", strings.Join(args, " "), err, c.want, out)
		}
	}
}

// hasLine reports whether out has a line that is want, but for spaces.
func hasLine(out []byte, want string) bool {
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

// TestSuiteImages builds the suite's images into a private daemon and
// checks them, without the suite (TestNodeConformance does the same before
// it starts): go test -run TestSuiteImages ./test/nodee2e/.
func TestSuiteImages(t *testing.T) {
	suite := framework.BuiltTool(t, "BERTH_TEST_NODE_E2E", "build-node-e2e.sh")
	d := framework.StartDockerd(t, "")
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	buildImages(t, d.Host, reg.Addr, suite, t.TempDir())
	checkImages(t, d.Host, reg.Addr)
}
