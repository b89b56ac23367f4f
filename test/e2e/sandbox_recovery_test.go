package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// privateBerth starts a berth of the test's own (so it can be killed and
// restarted) on its own CNI network.
func privateBerth(t *testing.T, o framework.CNIOptions, args ...string) (*framework.Berth, *framework.CNINetwork) {
	t.Helper()
	n := framework.NewCNINetwork(t, o)
	b := framework.StartBerth(t, framework.Options{Args: append(n.Args(o), args...)})
	return b, n
}

func TestBerthRestartLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, _ := privateBerth(t, framework.CNIOptions{})
	running := runPod(t, b, podConfig("survivor"))
	stopped := runPod(t, b, podConfig("stopped"))
	if err := b.Runtime.StopPodSandbox(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	before := map[string]*runtimeapi.PodSandboxStatus{running: podStatus(t, b, running), stopped: podStatus(t, b, stopped)}

	// A crash, not a clean stop.
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	for id, want := range before {
		got := podStatus(t, b, id)
		if got.State != want.State || got.GetNetwork().GetIp() != want.GetNetwork().GetIp() ||
			!equalMaps(got.Labels, want.Labels) || !equalMaps(got.Annotations, want.Annotations) ||
			got.CreatedAt != want.CreatedAt || got.Metadata.String() != want.Metadata.String() {
			t.Errorf("after a restart, pod %s is\n%v\nwas\n%v", id, got, want)
		}
	}
	// The running pod still works: another pod reaches it.
	startInPod(t, running, "mkdir -p /www && echo alive > /www/index.html && exec httpd -f -p 8080 -h /www")
	client := runPod(t, b, podConfig("client"))
	ip := before[running].GetNetwork().GetIp()
	eventually(t, 20*time.Second, func() error {
		out, err := inPod(t, client, "timeout 3 wget -q -O - http://"+ip+":8080/")
		if out != "alive" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	// A running pod whose pause dies while Berth runs turns NOTREADY.
	if out, err := docker(t, "kill", running); err != nil {
		t.Fatal(err, out)
	}
	eventually(t, 20*time.Second, func() error {
		if st := podStatus(t, b, running).State; st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			return fmt.Errorf("state %v after the pause container was killed", st)
		}
		return nil
	})
}

func TestPauseContainerGoneWhileBerthWasDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, n := privateBerth(t, framework.CNIOptions{})
	id := runPod(t, b, podConfig("vanished"))
	ip := podStatus(t, b, id).GetNetwork().GetIp()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := docker(t, "rm", "-f", id); err != nil {
		t.Fatal(err, out)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	st := podStatus(t, b, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("state = %v, want NOTREADY", st.State)
	}
	if contains(n.AllocatedIPs(), ip) {
		t.Errorf("the vanished pod's IP %s is still allocated after recovery", ip)
	}
	if err := b.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := b.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.RootDir, "sandboxes", id+".json")); !os.IsNotExist(err) {
		t.Errorf("checkpoint left behind: %v", err)
	}
}

func TestCorruptCheckpointNeverBlocksStopAndRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, _ := privateBerth(t, framework.CNIOptions{})
	id := runPod(t, b, podConfig("corrupt"))
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(b.RootDir, "sandboxes", id+".json")
	if err := os.WriteFile(cp, []byte(`{"version":1,"checksum":"sha256:00","data":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.Log(), "corrupt checkpoint") {
		t.Errorf("no log line about the corrupt checkpoint")
	}
	if q, _ := filepath.Glob(cp + ".corrupt-*"); len(q) != 1 {
		t.Errorf("corrupt checkpoint not quarantined: %v", q)
	}
	if err := b.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := b.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("remove: %v", err)
	}
	if out, err := docker(t, "inspect", id); err == nil {
		t.Errorf("pause container left: %s", out)
	}
}

// failingPlugin writes a CNI plugin that fails ADD (after the chain before
// it ran, so IPs were allocated) and returns the bin dirs to use.
func failingPlugin(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":999,"msg":"injected failure"}'
  exit 1
fi
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'
  exit 0
fi
cat >/dev/null
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "berth-fail"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{dir, framework.CNIBinDir}
}

func TestFailedRunPodSandboxLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := framework.CNIOptions{ExtraPlugins: []map[string]any{{"type": "berth-fail"}}, BinDirs: failingPlugin(t)}
	b, n := privateBerth(t, o)
	cfg := podConfig("cni-fails")
	_, err := b.Runtime.RunPodSandbox(ctx, cfg, "")
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("RunPodSandbox = %v, want the CNI failure", err)
	}
	assertNothingLeft(t, b, n, cfg)

	// Docker refusing to start the container (a bad sysctl value).
	cfg = podConfig("start-fails")
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "not-a-number"}
	good, _ := privateBerth(t, framework.CNIOptions{})
	if _, err := good.Runtime.RunPodSandbox(ctx, cfg, ""); err == nil {
		t.Fatalf("RunPodSandbox with a bad sysctl succeeded")
	}
	assertNothingLeft(t, good, nil, cfg)
}

func assertNothingLeft(t *testing.T, b *framework.Berth, n *framework.CNINetwork, cfg *runtimeapi.PodSandboxConfig) {
	t.Helper()
	if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_POD_"+cfg.Metadata.Name+"_berth-e2e_"+cfg.Metadata.Uid); out != "" {
		t.Errorf("a failed RunPodSandbox left containers: %s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(b.RootDir, "sandboxes")); len(entries) != 0 {
		t.Errorf("a failed RunPodSandbox left checkpoints: %v", entries)
	}
	if n != nil {
		if ips := n.AllocatedIPs(); len(ips) != 0 {
			t.Errorf("a failed RunPodSandbox left IPs allocated: %v", ips)
		}
	}
	items, _ := b.Runtime.ListPodSandbox(context.Background(), &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": cfg.Metadata.Name, "berth-e2e-run": runID}})
	if len(items) != 0 {
		t.Errorf("a failed RunPodSandbox left a listed sandbox: %v", items)
	}
}

func TestNetworkNotReadyRefusesPods(t *testing.T) {
	t.Parallel()
	b := framework.StartBerth(t, framework.Options{Args: []string{"--cni-conf-dir", t.TempDir()}})
	cfg := podConfig("no-cni")
	_, err := b.RuntimeClient.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	wantCode(t, err, codes.FailedPrecondition, "no CNI network configuration")
	assertNothingLeft(t, b, nil, cfg)
}

func TestDualStackPod(t *testing.T) {
	t.Parallel()
	b, n := privateBerth(t, framework.CNIOptions{DualStack: true})
	id := runPod(t, b, podConfig("dual"))
	st := podStatus(t, b, id)
	ips := []string{st.GetNetwork().GetIp()}
	for _, ip := range st.GetNetwork().GetAdditionalIps() {
		ips = append(ips, ip.GetIp())
	}
	if len(ips) != 2 || strings.Contains(ips[0], ":") || !strings.Contains(ips[1], ":") {
		t.Errorf("pod IPs = %v, want an IPv4 then an IPv6 address (%s, %s)", ips, n.Subnet, n.Subnet6)
	}
}

func TestPauseReapsZombies(t *testing.T) {
	t.Parallel()
	id := runPod(t, berth, podConfig("reaper"))
	pidStr, _ := docker(t, "inspect", "-f", "{{.State.Pid}}", id)
	// A helper in the pod's PID namespace orphans a short sleep, which the
	// kernel hands to the namespace's init: the pause process.
	if out, err := docker(t, "run", "--rm", "--pid", "container:"+id, "--label", "berth-e2e-run="+runID, framework.TestImage,
		"sh", "-c", "(sleep 0.3 &) ; sleep 0.1"); err != nil {
		t.Fatal(err, out)
	}
	time.Sleep(time.Second)
	children, _ := os.ReadFile("/proc/" + pidStr + "/task/" + pidStr + "/children")
	for _, c := range strings.Fields(string(children)) {
		stat, _ := os.ReadFile("/proc/" + c + "/stat")
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			t.Errorf("the pause process has a zombie child %s: %s", c, stat)
		}
	}
}

func TestAdoptsCriDockerdSandbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The pause image exists once any pod has run.
	runPod(t, berth, podConfig("warmup"))
	uid := "uid-" + randomSuffix()
	name := "k8s_POD_adopted_berth-e2e_" + uid + "_0"
	out, err := docker(t, "run", "-d", "--name", name, "--network", "none",
		"--label", "io.kubernetes.docker.type=podsandbox",
		"--label", "io.kubernetes.container.name=POD",
		"--label", "io.kubernetes.pod.name=adopted",
		"--label", "io.kubernetes.pod.namespace=berth-e2e",
		"--label", "io.kubernetes.pod.uid="+uid,
		"--label", "berth-e2e-run="+runID,
		"--label", "annotation.kubernetes.io/config.source=api",
		"berth.local/pause:1.0")
	if err != nil {
		t.Fatal(err, out)
	}
	id := out
	t.Cleanup(func() { _, _ = docker(t, "rm", "-f", id) })
	var sb *runtimeapi.PodSandbox
	eventually(t, 20*time.Second, func() error {
		items, err := berth.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: id})
		if err != nil || len(items) != 1 || items[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
			return fmt.Errorf("ListPodSandbox: %v %v", items, err)
		}
		sb = items[0]
		return nil
	})
	if sb.Metadata.GetName() != "adopted" || sb.Metadata.GetUid() != uid || sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("adopted sandbox = %v", sb)
	}
	if sb.Labels["io.kubernetes.pod.name"] != "adopted" || sb.Annotations["kubernetes.io/config.source"] != "api" {
		t.Errorf("labels %v annotations %v", sb.Labels, sb.Annotations)
	}
	if _, ok := sb.Labels["io.kubernetes.docker.type"]; ok {
		t.Errorf("internal label reported as a CRI label")
	}
	if err := berth.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := berth.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("remove: %v", err)
	}
	if out, err := docker(t, "inspect", id); err == nil {
		t.Errorf("adopted sandbox not removed: %s", out)
	}
}

func TestDockerBridgeMode(t *testing.T) {
	t.Parallel()
	port := framework.FreePort(t)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--network-plugin="}})
	cfg := podConfig("bridge")
	cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(port)}}
	id := runPod(t, b, cfg)
	st := podStatus(t, b, id)
	// The pod is on Docker's default bridge network: its address is in
	// that network's subnet (172.17.0.0/16 unless the daemon says
	// otherwise; the current-engine test daemon's is 10.230.0.0/24).
	nw, err := dockerClient(t, "").NetworkInspect(context.Background(), "bridge", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := netip.ParseAddr(st.GetNetwork().GetIp())
	inBridge := false
	for _, c := range nw.Network.IPAM.Config {
		inBridge = inBridge || c.Subnet.Contains(ip)
	}
	if !inBridge || st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("bridge-mode pod: state %v ip %q; Docker's bridge network has %+v", st.State, st.GetNetwork().GetIp(), nw.Network.IPAM.Config)
	}
	if p, _ := docker(t, "port", id); !strings.Contains(p, fmt.Sprint(port)) {
		t.Errorf("docker port = %q, want %d published", p, port)
	}
}

func TestBandwidthAnnotationsShapeTraffic(t *testing.T) {
	t.Parallel()
	b, n := privateBerth(t, framework.CNIOptions{})
	bad := podConfig("badbw")
	bad.Annotations["kubernetes.io/egress-bandwidth"] = "fast"
	_, err := b.RuntimeClient.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: bad})
	wantCode(t, err, codes.InvalidArgument, "kubernetes.io/egress-bandwidth")
	assertNothingLeft(t, b, n, bad)

	cfg := podConfig("shaped")
	cfg.Annotations["kubernetes.io/ingress-bandwidth"] = "1M"
	cfg.Annotations["kubernetes.io/egress-bandwidth"] = "2M"
	runPod(t, b, cfg)
	// The bandwidth plugin puts a token-bucket filter on the pod's host-side
	// interface (the only one on this test's bridge).
	out, err := exec.Command("ip", "-o", "link", "show", "master", n.Bridge).Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		t.Fatalf("no interface on bridge %s: %q", n.Bridge, out)
	}
	veth := strings.SplitN(strings.TrimSuffix(fields[1], ":"), "@", 2)[0]
	qd, err := exec.Command("tc", "qdisc", "show", "dev", veth).Output()
	if err != nil || !strings.Contains(string(qd), "tbf") {
		t.Errorf("no tbf qdisc on %s: %s (%v)", veth, qd, err)
	}
}

// TestKillDuringRunPodSandbox kills Berth (SIGKILL) at different points of
// RunPodSandbox; after a restart, kubelet's retry must converge on one
// sandbox, and removing it must leave nothing behind.
func TestKillDuringRunPodSandbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, n := privateBerth(t, framework.CNIOptions{})
	for i, delay := range []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond} {
		cfg := podConfig(fmt.Sprintf("killed-%d", i))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		}()
		time.Sleep(delay)
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		<-done
		if err := b.Restart(); err != nil {
			t.Fatal(err)
		}
		id, err := b.Runtime.RunPodSandbox(ctx, cfg, "")
		if err != nil {
			t.Fatalf("retry after a kill %v into RunPodSandbox: %v", delay, err)
		}
		if st := podStatus(t, b, id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
			t.Errorf("retried pod: %v %q", st.State, st.GetNetwork().GetIp())
		}
		if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_POD_"+cfg.Metadata.Name+"_berth-e2e_"+cfg.Metadata.Uid); len(strings.Fields(out)) != 1 {
			t.Errorf("kill after %v: pause containers %q, want one", delay, out)
		}
		removePod(t, b, id)
		assertNothingLeft(t, b, n, cfg)
	}
}
