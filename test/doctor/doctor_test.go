// Package doctor tests `berth doctor` against real set-ups the tests build:
// kubelet files in temporary directories, CNI configurations, a real Berth,
// private Docker daemons configured differently from the system one, a
// process connected to Docker's socket and a container mounting it.
package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/test/framework"
)

// holdEnv makes the test binary, re-executed, connect to the unix socket it
// names and wait: a process holding Docker's socket, as an agent would.
const holdEnv = "BERTH_DOCTOR_TEST_HOLD_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		conn, err := net.Dial("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hold:", err)
			os.Exit(1)
		}
		fmt.Println("connected")
		time.Sleep(10 * time.Minute)
		conn.Close()
		os.Exit(0)
	}
	if _, err := framework.RequireDocker(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "doctor tests: FAIL:", err)
		os.Exit(1)
	}
	// berth doctor judges the kubelets running on this machine: a kubelet
	// suite's would turn TestGoodNode's kubelet-endpoint check into a warning.
	unlock, err := framework.LockKubeletHostMain("doctor tests")
	if err != nil {
		fmt.Fprintln(os.Stderr, "doctor tests: FAIL:", err)
		os.Exit(1)
	}
	code := m.Run()
	unlock()
	os.Exit(code)
}

type finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

type report struct {
	Findings []finding `json:"findings"`
	Worst    string    `json:"worst"`
	exitCode int
	raw      string
}

// status returns the worst status of the named check's findings, and their
// details joined.
func (r report) status(check string) (string, string) {
	rank := map[string]int{"pass": 0, "warn": 1, "fail": 2}
	worst, details := "", []string{}
	for _, f := range r.Findings {
		if f.Check != check {
			continue
		}
		if worst == "" || rank[f.Status] > rank[worst] {
			worst = f.Status
		}
		details = append(details, f.Detail)
		if f.Status != "pass" && f.Fix == "" {
			worst = "fix missing"
		}
	}
	return worst, strings.Join(details, " | ")
}

func (r report) expect(t *testing.T, check, status string, detailContains ...string) {
	t.Helper()
	got, detail := r.status(check)
	if got != status {
		t.Errorf("%s: status %q (%s), want %q", check, got, detail, status)
		return
	}
	for _, s := range detailContains {
		if !strings.Contains(detail, s) {
			t.Errorf("%s: detail %q does not mention %q", check, detail, s)
		}
	}
}

// node is a node's kubelet and CNI files in a temporary directory.
type node struct {
	dir          string
	kubeletCfg   string
	kubeadmFlags string
	defaults     string
	cniConf      string
	daemonJSON   string
	leftovers    string
}

func newNode(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{
		dir:          dir,
		kubeletCfg:   filepath.Join(dir, "var/lib/kubelet/config.yaml"),
		kubeadmFlags: filepath.Join(dir, "var/lib/kubelet/kubeadm-flags.env"),
		defaults:     filepath.Join(dir, "etc/default/kubelet"),
		cniConf:      filepath.Join(dir, "etc/cni/net.d"),
		daemonJSON:   filepath.Join(dir, "etc/docker/daemon.json"),
		leftovers:    filepath.Join(dir, "var/lib/dockershim"),
	}
	for _, d := range []string{filepath.Dir(n.kubeletCfg), filepath.Dir(n.defaults), n.cniConf, filepath.Dir(n.daemonJSON)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *node) write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (n *node) kubeletConfig(t *testing.T, cgroupDriver, endpoint string) {
	n.write(t, n.kubeletCfg, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: %s
containerRuntimeEndpoint: %s
`, cgroupDriver, endpoint))
}

func (n *node) bridgeNetwork(t *testing.T, plugins ...string) {
	if len(plugins) == 0 {
		plugins = []string{"bridge", "loopback"}
	}
	var ps []string
	for _, p := range plugins {
		switch p {
		case "bridge":
			ps = append(ps, `{"type": "bridge", "bridge": "cni-doctor0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.233.0.0/24"}]]}}`)
		default:
			ps = append(ps, fmt.Sprintf(`{"type": %q}`, p))
		}
	}
	n.write(t, filepath.Join(n.cniConf, "10-test.conflist"),
		`{"cniVersion": "1.0.0", "name": "doctor-test", "plugins": [`+strings.Join(ps, ", ")+`]}`)
}

// doctor runs `berth doctor -o json` with the node's paths and extra args.
func (n *node) doctor(t *testing.T, dockerHost, berthSocket string, extra ...string) report {
	t.Helper()
	bin, err := framework.Binary()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"doctor", "-o", "json",
		"--config=", // never read an installed /etc/berth/config.toml
		"--docker-endpoint", dockerHost,
		"--socket", berthSocket,
		"--cni-conf-dir", n.cniConf,
		"--cni-bin-dir", "/usr/lib/cni",
		"--kubelet-config", n.kubeletCfg,
		"--kubeadm-flags-file", n.kubeadmFlags,
		"--kubelet-defaults-file", n.defaults,
		"--docker-daemon-json", n.daemonJSON,
		"--leftover-paths", n.leftovers,
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := report{raw: stdout.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.exitCode = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("berth doctor: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("berth doctor output is not JSON: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	wantCode := map[string]int{"pass": 0, "warn": 1, "fail": 2}[r.Worst]
	if r.exitCode != wantCode {
		t.Errorf("exit code %d, want %d for worst finding %q", r.exitCode, wantCode, r.Worst)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("doctor report:\n%s", r.raw)
		}
	})
	return r
}

func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// TestGoodNode: a node set up right passes every check that is about
// kubelet, CNI and Berth.
func TestGoodNode(t *testing.T) {
	b := framework.StartBerth(t, framework.Options{})
	n := newNode(t)
	n.kubeletConfig(t, "cgroupfs", b.Endpoint)
	n.write(t, n.kubeadmFlags, `KUBELET_KUBEADM_ARGS="--pod-infra-container-image=registry.k8s.io/pause:3.10 --container-runtime-endpoint=`+b.Endpoint+`"`+"\n")
	n.bridgeNetwork(t, "bridge", "portmap", "loopback")

	r := n.doctor(t, framework.DockerHost(), b.Socket)
	r.expect(t, "docker", "pass", "API")
	r.expect(t, "cgroup-driver", "pass", "cgroupfs")
	r.expect(t, "cni", "pass", "doctor-test", "portmap")
	r.expect(t, "pause-image", "pass", "berth.local/pause")
	r.expect(t, "berth-socket", "pass", b.Socket, "0660")
	r.expect(t, "kubelet-endpoint", "pass", b.Endpoint)
	r.expect(t, "dockershim-leftovers", "pass")
	r.expect(t, "daemon-json", "pass", "does not exist")
	r.expect(t, "compat-flags", "pass")
}

// TestCompatFlags: a cri-dockerd unit's --hairpin-mode and
// --ipv6-dual-stack start Berth unchanged but do nothing; the doctor says
// so, and what decides instead. --runtime-cgroups does something: no
// finding.
func TestCompatFlags(t *testing.T) {
	n := newNode(t)
	r := n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock",
		"--hairpin-mode=promiscuous-bridge", "--ipv6-dual-stack", "--runtime-cgroups=/berth-runtime")
	r.expect(t, "compat-flags", "warn", "--hairpin-mode=promiscuous-bridge has no effect", "network configuration decides",
		"--ipv6-dual-stack=true has no effect", "IPAM ranges")
	var fixes []string
	for _, f := range r.Findings {
		if f.Check != "compat-flags" {
			continue
		}
		fixes = append(fixes, f.Fix)
		if strings.Contains(f.Detail+f.Fix, "runtime-cgroups") {
			t.Errorf("--runtime-cgroups reported as ignored: %+v", f)
		}
	}
	if len(fixes) != 2 || !strings.Contains(fixes[0], `"hairpinMode": true`) || !strings.Contains(fixes[1], "IPv6 range") {
		t.Errorf("fixes %q, want the conflist's hairpinMode and its ranges", fixes)
	}
}

// TestWrongCgroupDriver: kubelet set to systemd on a cgroupfs Docker, and a
// Docker daemon really running with the systemd driver against a kubelet
// set to cgroupfs.
func TestWrongCgroupDriver(t *testing.T) {
	n := newNode(t)
	n.kubeletConfig(t, "systemd", "unix:///run/berth/berth.sock")
	r := n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "cgroup-driver", "fail", "Docker uses cgroupfs", "kubelet is set to systemd", n.kubeletCfg)
	if r.exitCode != 2 {
		t.Errorf("exit code %d, want 2", r.exitCode)
	}

	// A flag overrides the configuration file, as in kubelet.
	n.write(t, n.defaults, "KUBELET_EXTRA_ARGS=--cgroup-driver=cgroupfs\n")
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "cgroup-driver", "pass", n.defaults)

	// Docker 20.10 starts with the systemd driver without systemd as
	// init; it reports the driver, which is what the check reads (its
	// containers could not start, and none are needed here).
	d := framework.StartDockerd(t, "", "--exec-opt", "native.cgroupdriver=systemd")
	n.kubeletConfig(t, "cgroupfs", "unix:///run/berth/berth.sock")
	os.Remove(n.defaults)
	r = n.doctor(t, d.Host, "/nonexistent/berth.sock")
	r.expect(t, "cgroup-driver", "fail", "Docker uses systemd", "kubelet is set to cgroupfs")
	n.kubeletConfig(t, "systemd", "unix:///run/berth/berth.sock")
	r = n.doctor(t, d.Host, "/nonexistent/berth.sock")
	r.expect(t, "cgroup-driver", "pass", "both use systemd")
}

// TestMissingCNI: no configuration at all, a configuration naming a plugin
// that is not installed, and a file that is not JSON.
func TestMissingCNI(t *testing.T) {
	n := newNode(t)
	r := n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "cni", "fail", "no CNI network configuration", n.cniConf)

	n.bridgeNetwork(t, "bridge", "no-such-plugin-berth")
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "cni", "fail", "no-such-plugin-berth")

	os.Remove(filepath.Join(n.cniConf, "10-test.conflist"))
	n.write(t, filepath.Join(n.cniConf, "10-broken.conflist"), "{not json")
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "cni", "fail", "10-broken.conflist")

	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock", "--network-plugin=")
	r.expect(t, "cni", "warn", "CNI is off")
}

// TestBerthSocket: absent, world-writable, and a socket nothing serves.
func TestBerthSocket(t *testing.T) {
	n := newNode(t)
	sock := filepath.Join(n.dir, "berth.sock")
	r := n.doctor(t, framework.DockerHost(), sock)
	r.expect(t, "berth-socket", "fail", "does not exist")

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	r = n.doctor(t, framework.DockerHost(), sock)
	r.expect(t, "berth-socket", "fail", "0666")

	// The runtime endpoint kubelet is given differs from the socket.
	n.kubeletConfig(t, "cgroupfs", "unix:///var/run/cri-dockerd.sock")
	r = n.doctor(t, framework.DockerHost(), sock)
	r.expect(t, "kubelet-endpoint", "fail", "cri-dockerd.sock", "not Berth's")
}

// TestKubeletEndpointSources: kubeadm-flags.env overrides the configuration
// file, /etc/default/kubelet overrides both, and dockershim-only flags are
// reported.
func TestKubeletEndpointSources(t *testing.T) {
	b := framework.StartBerth(t, framework.Options{})
	n := newNode(t)
	n.kubeletConfig(t, "cgroupfs", "unix:///run/containerd/containerd.sock")
	n.write(t, n.kubeadmFlags, `KUBELET_KUBEADM_ARGS="--container-runtime=remote --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock --network-plugin=cni"`+"\n")
	r := n.doctor(t, framework.DockerHost(), b.Socket)
	r.expect(t, "kubelet-endpoint", "fail", "cri-dockerd.sock", n.kubeadmFlags, "containerd.sock", "dockershim-only flags", "--network-plugin")

	n.write(t, n.defaults, "KUBELET_EXTRA_ARGS='--container-runtime-endpoint "+b.Endpoint+"'\n")
	r = n.doctor(t, framework.DockerHost(), b.Socket)
	r.expect(t, "kubelet-endpoint", "warn", b.Endpoint, "overridden by "+n.defaults)
	for _, f := range r.Findings {
		if f.Check == "kubelet-endpoint" && f.Status == "pass" && !strings.Contains(f.Detail, n.defaults) {
			t.Errorf("pass finding does not name %s: %s", n.defaults, f.Detail)
		}
	}
}

// TestDockerDependents: a private Docker daemon configured by a daemon.json
// with settings that affect pods, a process connected to its socket, and a
// container in the shared daemon that mounts Docker's socket.
func TestDockerDependents(t *testing.T) {
	n := newNode(t)
	n.write(t, n.daemonJSON, `{
  "log-driver": "local",
  "registry-mirrors": ["https://mirror.berth-test.invalid"],
  "insecure-registries": ["registry.berth-test.invalid:5000", "10.99.0.0/16"],
  "live-restore": true
}`)
	d := framework.StartDockerd(t, "", "--config-file", n.daemonJSON)
	sock := strings.TrimPrefix(d.Host, "unix://")

	// A process holding a connection to the private daemon's socket.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(self)
	holder.Env = append(os.Environ(), holdEnv+"="+sock)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	line := make([]byte, len("connected"))
	if _, err := out.Read(line); err != nil || string(line) != "connected" {
		t.Fatalf("socket holder did not connect: %q %v", line, err)
	}

	n.write(t, filepath.Join(n.leftovers, "sandbox", "abc"), "{}")
	r := n.doctor(t, d.Host, "/nonexistent/berth.sock")
	r.expect(t, "docker", "pass")
	r.expect(t, "daemon-json", "pass", n.daemonJSON)
	r.expect(t, "log-driver", "fail", `"local"`)
	r.expect(t, "registry-mirrors", "pass", "mirror.berth-test.invalid")
	r.expect(t, "insecure-registries", "warn", "registry.berth-test.invalid:5000", "10.99.0.0/16")
	r.expect(t, "live-restore", "pass")
	r.expect(t, "docker-socket-users", "warn", "(pid "+strconv.Itoa(holder.Process.Pid)+")")
	r.expect(t, "dockershim-leftovers", "warn", n.leftovers)

	// With the holder gone, nothing but Docker is connected.
	_ = holder.Process.Kill()
	_ = holder.Wait()
	r = n.doctor(t, d.Host, "/nonexistent/berth.sock")
	r.expect(t, "docker-socket-users", "pass")

	// A daemon.json that does not parse; a json-file log driver without
	// rotation; live-restore off.
	n.write(t, n.daemonJSON, `{"log-driver": `)
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "daemon-json", "fail", "not valid JSON")
	os.Remove(n.daemonJSON)
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "log-driver", "warn", "no max-size")

	// A container in the shared daemon mounting Docker's socket.
	c, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	name := uniqueName("berth-doctor-sockmount-")
	ctx := context.Background()
	created, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: framework.TestImage, Cmd: []string{"true"}, Labels: map[string]string{"berth-test": "doctor"}},
		HostConfig: &container.HostConfig{
			Binds: []string{"/var/run/docker.sock:/var/run/docker.sock"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := c.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("removing %s: %v", name, err)
		}
	})
	r = n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock")
	r.expect(t, "docker-socket-mounts", "warn", name, "/var/run/docker.sock")
}

// TestTableOutput: the default output is a table with a fix under each
// problem, and the exit code is the worst finding's.
func TestTableOutput(t *testing.T) {
	n := newNode(t)
	bin, err := framework.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "doctor", "--docker-endpoint", framework.DockerHost(),
		"--socket", "/nonexistent/berth.sock", "--cni-conf-dir", n.cniConf,
		"--kubelet-config", n.kubeletCfg, "--kubeadm-flags-file", n.kubeadmFlags,
		"--kubelet-defaults-file", n.defaults, "--docker-daemon-json", n.daemonJSON,
		"--leftover-paths", n.leftovers)
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2 (cni and berth-socket fail)\n%s", err, out)
	}
	for _, want := range []string{"STATUS", "CHECK", "FAIL    cni", "fix: ", "summary: "} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	cmd = exec.Command(bin, "doctor", "--output", "yaml")
	if err := cmd.Run(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Errorf("bad --output: %v, want exit status 3", err)
	}
}

// TestPauseImage: present; absent but Berth's own (built on the first pod);
// absent and another image (pulled, or built under that name).
func TestPauseImage(t *testing.T) {
	n := newNode(t)
	r := n.doctor(t, framework.DockerHost(), "/nonexistent/berth.sock", "--pod-infra-container-image", framework.TestImage)
	r.expect(t, "pause-image", "pass", framework.TestImage+" is present")

	d := framework.StartDockerd(t, "") // an empty daemon: no image at all
	r = n.doctor(t, d.Host, "/nonexistent/berth.sock")
	r.expect(t, "pause-image", "pass", "berth.local/pause:1.0 is not in Docker yet", "builds it locally")

	r = n.doctor(t, d.Host, "/nonexistent/berth.sock", "--pod-infra-container-image", "registry.berth-test.invalid/pause:3.10")
	r.expect(t, "pause-image", "warn", "registry.berth-test.invalid/pause:3.10 is not in Docker")
}

// TestRunningKubelet: with a process table (a directory laid out as /proc)
// holding a running kubelet and a cri-dockerd, the doctor takes kubelet's
// configuration file from its --config, reports that the running kubelet
// uses another endpoint than its files now say, and that cri-dockerd runs.
func TestRunningKubelet(t *testing.T) {
	b := framework.StartBerth(t, framework.Options{})
	n := newNode(t)
	proc := filepath.Join(n.dir, "proc")
	other := filepath.Join(n.dir, "etc/kubernetes/kubelet-config.yaml")
	n.write(t, other, "kind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: "+b.Endpoint+"\n")
	n.write(t, filepath.Join(proc, "4242", "comm"), "kubelet\n")
	n.write(t, filepath.Join(proc, "4242", "cmdline"), strings.Join([]string{"/usr/bin/kubelet",
		"--config=" + other, "--container-runtime-endpoint", "unix:///var/run/cri-dockerd.sock", ""}, "\x00"))
	n.write(t, filepath.Join(proc, "4343", "comm"), "cri-dockerd\n")
	n.write(t, filepath.Join(proc, "4343", "cmdline"), "/usr/bin/cri-dockerd\x00--container-runtime-endpoint\x00fd://\x00")

	r := n.doctor(t, framework.DockerHost(), b.Socket, "--proc-root", proc, "--kubelet-config", "")
	r.expect(t, "cgroup-driver", "fail", "kubelet is set to systemd", other)
	r.expect(t, "kubelet-endpoint", "warn", "the running kubelet (pid 4242) uses unix:///var/run/cri-dockerd.sock")
	r.expect(t, "dockershim-leftovers", "warn", "cri-dockerd is running (pid 4343)")
}
