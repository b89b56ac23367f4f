package kubelet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"

	"github.com/berth-cri/berth/test/framework"
)

// A mode is one full run of the suite: a fresh Berth and a fresh kubelet
// with these feature gates, its static pods and its checks (the suite's
// pods and checks when nil).
type mode struct {
	name   string
	gates  map[string]bool
	pods   func(podSet) []*corev1.Pod
	checks []check
}

// The modes. In the default one kubelet takes containers' figures from
// ListContainerStats and pods' cgroups and network from its built-in
// cAdvisor; in cri-only it takes everything it can from Berth: pod and
// container stats from ListPodSandboxStats, /metrics/cadvisor from
// ListPodSandboxMetrics, and container deaths from GetContainerEvents.
const (
	modeDefault = "default"
	modeCRIOnly = "cri-only"
)

var modes = []mode{
	{name: modeDefault},
	{name: modeCRIOnly, gates: map[string]bool{
		// kubelet subscribes to GetContainerEvents and relists a pod as
		// soon as one of its containers stops.
		"EventedPLEG": true,
		// /stats/summary and /metrics/cadvisor from the runtime alone;
		// kubelet's cAdvisor stops watching containers.
		"PodAndContainerStatsFromCRI": true,
	}},
}

// check is one PASS/FAIL line of the suite.
type check struct {
	name string
	only string // run only in this mode
	fn   func(t *testing.T, e *env)
}

// checks run in this order; pods start together, so most wait only for
// their own pod. Deleting the pods and restoring the host come last.
var checks = []check{
	{name: "static-pods-running", fn: checkPodsRunning},
	{name: "runningpods", fn: checkRunningPods},
	{name: "restart-count-and-last-state", fn: checkRestart},
	{name: "liveness-probe-restarts", fn: checkLiveness},
	{name: "onfailure-succeeded", fn: checkOnFailure},
	{name: "init-container", fn: checkInit},
	{name: "guaranteed-cgroup", fn: checkGuaranteed},
	{name: "hostport", fn: checkHostPort},
	{name: "volumes-hostpath-emptydir", fn: checkVolumes},
	{name: "stats-summary", fn: checkStats},
	{name: "stats-summary-from-cri", only: modeCRIOnly, fn: checkStatsFromCRI},
	{name: "metrics-cadvisor-from-cri", only: modeCRIOnly, fn: checkCadvisorMetrics},
	{name: "container-logs", fn: checkLogs},
	{name: "container-logs-previous", fn: checkLogsPrevious},
	{name: "log-rotation", fn: checkLogRotation},
	{name: "run", fn: checkRun},
	{name: "exec-spdy", fn: func(t *testing.T, e *env) { checkExec(t, e, protoSPDY) }},
	{name: "exec-websocket", fn: func(t *testing.T, e *env) { checkExec(t, e, protoWebSocket) }},
	{name: "exec-websocket-v4-passthrough", fn: checkExecWebSocketV4},
	{name: "attach-spdy", fn: func(t *testing.T, e *env) { checkAttach(t, e, protoSPDY) }},
	{name: "attach-websocket", fn: func(t *testing.T, e *env) { checkAttach(t, e, protoWebSocket) }},
	{name: "portforward-spdy", fn: func(t *testing.T, e *env) { checkPortForward(t, e, protoSPDY) }},
	{name: "portforward-websocket", fn: func(t *testing.T, e *env) { checkPortForward(t, e, protoWebSocket) }},
	{name: "container-death-restart", fn: checkContainerDeath},
	{name: "evented-pleg-fast-path", only: modeCRIOnly, fn: checkEventedPLEG},
	{name: "evented-pleg-pod-status", only: modeCRIOnly, fn: checkPodStatusFallback},
	{name: "delete-manifests-cleans-up", fn: checkDelete},
	{name: "host-restored", fn: checkHostRestored},
}

// result is a check's outcome, for the summary.
type result struct {
	name   string
	passed bool
}

var (
	resultsMu sync.Mutex // guards results
	results   []result
)

// TestKubelet runs the suite once per mode against one private Docker
// daemon (kubelet manages every pod its runtime reports, so it must never
// see another test's containers in the shared daemon).
func TestKubelet(t *testing.T) {
	framework.LockKubeletHost(t, "kubelet")
	bin := kubeletBinary(t)
	d, dc := startSuiteDocker(t)
	t.Cleanup(printSummary)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { runMode(t, m, bin, d, dc) })
	}
}

// kubeletBinary is the kubelet under test (BERTH_TEST_KUBELET, else the
// one hack/build-kubelet.sh builds), its version printed.
func kubeletBinary(t testing.TB) string {
	t.Helper()
	bin := framework.BuiltTool(t, "BERTH_TEST_KUBELET", "build-kubelet.sh")
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	fmt.Printf("kubelet: %s (%s)\n", strings.TrimSpace(string(out)), bin)
	return bin
}

// startSuiteDocker starts a private daemon of the engine under test with
// extra flags, builds the test image into it and connects to it.
func startSuiteDocker(t testing.TB, extraArgs ...string) (*framework.Dockerd, *client.Client) {
	t.Helper()
	d := framework.StartDockerd(t, "", extraArgs...)
	build := exec.Command(filepath.Join(framework.RepoRoot(), "hack", "build-test-images.sh"), d.Host)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test images into the private daemon: %v\n%s", err, out)
	}
	dc, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	return d, dc
}

// runMode sets up Berth and kubelet and runs every check as a subtest.
func runMode(t *testing.T, m mode, bin string, d *framework.Dockerd, dc *client.Client) {
	e := setUp(t, m, bin, d, dc)
	list := m.checks
	if list == nil {
		list = checks
	}
	for _, c := range list {
		if c.only != "" && c.only != m.name {
			continue
		}
		ran := false
		ok := t.Run(c.name, func(t *testing.T) {
			ran = true
			if e.kubelet.Exited() && c.name != "host-restored" {
				t.Fatalf("kubelet exited:\n%s", e.kubelet.tail(40))
			}
			c.fn(t, e)
		})
		if !ran {
			continue // not selected by -run
		}
		resultsMu.Lock()
		results = append(results, result{name: m.name + "/" + c.name, passed: ok})
		resultsMu.Unlock()
	}
}

// printSummary prints one PASS/FAIL line per check.
func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	pass := 0
	for _, r := range results {
		if r.passed {
			pass++
			fmt.Printf("kubelet: PASS %s\n", r.name)
		} else {
			fmt.Printf("kubelet: FAIL %s\n", r.name)
		}
	}
	fmt.Printf("kubelet: %d of %d checks passed\n", pass, len(results))
}

// env is one mode's world.
type env struct {
	mode     mode
	dir      string
	nodeName string
	docker   *framework.Dockerd
	dc       *client.Client
	berth    *framework.Berth
	net      *framework.CNINetwork
	guard    *hostGuard
	kubelet  *kubeletProcess
	kc       *kubeletClient
	opts     kubeletOptions
	pods     podSet
	hostDir  string
	// berthMetrics is Berth's /metrics URL: its per-RPC counters show
	// which CRI calls kubelet makes.
	berthMetrics string

	// Set by checkContainerDeath for checkEventedPLEG.
	killedID      string
	eventsBefore  float64
	deathObserved bool
}

func setUp(t *testing.T, m mode, bin string, d *framework.Dockerd, dc *client.Client) *env {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	// Short: the Unix socket paths kubelet makes under its root dir are
	// limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bk-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{mode: m, dir: dir, nodeName: "berth-kubelet-" + suffix, docker: d, dc: dc}

	// Cleanups run last first: kubelet stops, the pods are swept through
	// Berth, Berth stops, the CNI network goes, the host is restored, the
	// directory goes.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeping %s for inspection", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the run's directory: %v", err)
		}
	})
	e.guard = guardHost(t, "/berth-kubelet-"+suffix, dir)
	e.net = framework.NewCNINetwork(t, framework.CNIOptions{})
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", framework.FreePort(t))
	e.berthMetrics = "http://" + metricsAddr + "/metrics"
	e.berth = framework.StartBerth(t, framework.Options{
		// Info, not the framework's debug: kubelet polls Berth several
		// times a second, and the log is printed when a check fails.
		Args: append([]string{"--docker-endpoint", d.Host, "--log-level", "info", "--metrics-address", metricsAddr}, e.net.Args()...),
	})
	t.Cleanup(func() { sweepPods(t, e.berth) })

	e.hostDir = filepath.Join(dir, "hostpath")
	manifests := filepath.Join(dir, "manifests")
	for _, p := range []string{e.hostDir, manifests} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.pods = podSet{HostDir: e.hostDir, HostPort: framework.FreePort(t)}
	pods := podSet.pods
	if m.pods != nil {
		pods = m.pods
	}
	for _, p := range pods(e.pods) {
		if err := writeManifest(manifests, p); err != nil {
			t.Fatal(err)
		}
	}
	e.opts = kubeletOptions{
		NodeName:        e.nodeName,
		RuntimeEndpoint: e.berth.Endpoint,
		Port:            framework.FreePort(t),
		CgroupRoot:      e.guard.cgroupRoot,
		StaticPodPath:   manifests,
		PodLogsDir:      filepath.Join(dir, "pod-logs"),
		VolumePluginDir: filepath.Join(dir, "volume-plugins"),
		FeatureGates:    m.gates,
	}
	e.kubelet = startKubelet(t, bin, dir, e.opts)
	e.kc = e.waitForKubelet(t)
	return e
}

// waitForKubelet waits for kubelet's certificate and its /healthz.
func (e *env) waitForKubelet(t *testing.T) *kubeletClient {
	t.Helper()
	var kc *kubeletClient
	e.eventually(t, 2*time.Minute, "kubelet serving /healthz", func() error {
		if kc == nil {
			c, err := newKubeletClient(e.opts.Port, filepath.Join(e.kubelet.CertDir, "kubelet.crt"), e.nodeName)
			if err != nil {
				return err
			}
			kc = c
		}
		body, err := kc.do(context.Background(), "GET", "/healthz")
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("/healthz = %q", body)
		}
		return nil
	})
	return kc
}

// eventually polls f until it succeeds; it fails the test when timeout
// passes or kubelet exits. The timeouts bound a hang; they measure nothing.
func (e *env) eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	timeout = framework.Scaled(timeout) // a slow node's
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if strings.Contains(err.Error(), "code = Unimplemented") {
			t.Fatalf("%s: %v", what, err) // it will not be implemented while we wait
		}
		if e.kubelet.Exited() {
			t.Fatalf("%s: kubelet exited (last error: %v):\n%s", what, err, e.kubelet.tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podName is the name kubelet gives a static pod: <name>-<node>.
func (e *env) podName(name string) string { return name + "-" + e.nodeName }

// pod returns the static pod name from kubelet's /pods.
func (e *env) pod(name string) (*corev1.Pod, error) {
	pods, err := e.kc.Pods(context.Background())
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if pods[i].Name == e.podName(name) && pods[i].Namespace == namespace {
			return &pods[i], nil
		}
	}
	return nil, fmt.Errorf("pod %s not in /pods", e.podName(name))
}

// containerStatus returns a container's status in pod name.
func (e *env) containerStatus(name, container string) (*corev1.Pod, *corev1.ContainerStatus, error) {
	p, err := e.pod(name)
	if err != nil {
		return nil, nil, err
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				return p, &list[i], nil
			}
		}
	}
	return p, nil, fmt.Errorf("pod %s has no status for container %s yet (phase %s)", p.Name, container, p.Status.Phase)
}

// waitRunning waits until the container runs and is ready, and returns
// its status.
func (e *env) waitRunning(t *testing.T, name, container string) *corev1.ContainerStatus {
	t.Helper()
	var cs *corev1.ContainerStatus
	e.eventually(t, 3*time.Minute, name+"/"+container+" running", func() error {
		_, s, err := e.containerStatus(name, container)
		if err != nil {
			return err
		}
		if s.State.Running == nil || !s.Ready {
			return fmt.Errorf("state %s, ready %t", describeState(s.State), s.Ready)
		}
		cs = s
		return nil
	})
	return cs
}

func describeState(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.String()
	case s.Waiting != nil:
		return fmt.Sprintf("waiting (%s: %s)", s.Waiting.Reason, s.Waiting.Message)
	case s.Terminated != nil:
		return fmt.Sprintf("terminated (exit %d, %s: %s)", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	}
	return "unknown"
}

// dockerID strips the runtime prefix kubelet puts on container ids.
func dockerID(containerID string) string {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		return id
	}
	return containerID
}

// sweepPods removes every pod sandbox Berth knows, for a run that ended
// before its pods were deleted: the private daemon holds only this suite's
// containers, and removing them through Berth also releases their network.
func sweepPods(t testing.TB, b *framework.Berth) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sandboxes, err := b.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Logf("sweeping pods: %v", err)
		return
	}
	for _, sb := range sandboxes {
		if err := b.Runtime.StopPodSandbox(ctx, sb.Id); err != nil {
			t.Logf("sweeping pod %s: %v", sb.Metadata.GetName(), err)
		}
		if err := b.Runtime.RemovePodSandbox(ctx, sb.Id); err != nil {
			t.Logf("sweeping pod %s: %v", sb.Metadata.GetName(), err)
		}
	}
}
