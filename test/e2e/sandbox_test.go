package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

func TestPodSandboxLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := podConfig("lifecycle")
	cfg.Labels["annotation.looks-like"] = "a label"
	cfg.Annotations["io.kubernetes.sandbox.id"] = "an annotation with an internal name ✓"
	id := runPod(t, berth, cfg)

	st := podStatus(t, berth, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state = %v, want READY", st.State)
	}
	ip, err := netip.ParseAddr(st.GetNetwork().GetIp())
	if err != nil || !netip.MustParsePrefix(sharedNet.Subnet).Contains(ip) {
		t.Errorf("pod IP %q is not in %s", st.GetNetwork().GetIp(), sharedNet.Subnet)
	}
	if !equalMaps(st.Labels, cfg.Labels) || !equalMaps(st.Annotations, cfg.Annotations) {
		t.Errorf("labels/annotations do not round-trip:\n got %v %v\nwant %v %v", st.Labels, st.Annotations, cfg.Labels, cfg.Annotations)
	}
	if st.Metadata.GetName() != "lifecycle" || st.Metadata.GetUid() != cfg.Metadata.Uid {
		t.Errorf("metadata = %v", st.Metadata)
	}
	name, err := docker(t, "inspect", "-f", "{{.Name}}", id)
	if err != nil || name != "/k8s_POD_lifecycle_berth-e2e_"+cfg.Metadata.Uid+"_0" {
		t.Errorf("docker name = %q (%v)", name, err)
	}

	items, err := berth.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: id})
	if err != nil || len(items) != 1 || items[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("ListPodSandbox = %v, %v", items, err)
	}

	if err := berth.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	st = podStatus(t, berth, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.GetNetwork().GetIp() != "" {
		t.Errorf("after stop: state %v ip %q", st.State, st.GetNetwork().GetIp())
	}
	if code, _ := docker(t, "inspect", "-f", "{{.State.ExitCode}}", id); code != "0" {
		t.Errorf("pause exit code = %s: it should exit 0 on SIGTERM, not be killed", code)
	}
	if ips := sharedNet.AllocatedIPs(); contains(ips, ip.String()) {
		t.Errorf("the pod's IP %s is still allocated after stop", ip)
	}
	if err := berth.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := berth.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := berth.Runtime.PodSandboxStatus(ctx, id, false); codeOf(err) != "NotFound" {
		t.Errorf("status after remove = %v, want NotFound", err)
	}
	if out, err := docker(t, "inspect", id); err == nil {
		t.Errorf("pause container still exists: %s", out)
	}
	if err := berth.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func TestPodSandboxIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := podConfig("idempotent")
	ids := make([]string, 5)
	errs := make([]error, 5)
	parallel(5, func(i int) { ids[i], errs[i] = berth.Runtime.RunPodSandbox(ctx, cfg, "") })
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
	}
	t.Cleanup(func() { removePod(t, berth, ids[0]) })
	for i := range ids {
		if ids[i] != ids[0] {
			t.Errorf("concurrent RunPodSandbox calls for one pod returned %v", ids)
			break
		}
	}
	again, err := berth.Runtime.RunPodSandbox(ctx, cfg, "")
	if err != nil || again != ids[0] {
		t.Errorf("a later RunPodSandbox for the same pod = %s, %v; want %s", again, err, ids[0])
	}
	out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_POD_idempotent_berth-e2e_"+cfg.Metadata.Uid)
	if n := len(strings.Fields(out)); n != 1 {
		t.Errorf("%d pause containers for one pod, want 1", n)
	}
}

func TestFiftyConcurrentPods(t *testing.T) {
	ctx := context.Background()
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		cfg := podConfig(fmt.Sprintf("many-%d", i))
		// As kubelet does: a call that outlives its deadline is retried,
		// and the retry gets the sandbox the first call finished.
		for attempt := 0; attempt < 3; attempt++ {
			ids[i], errs[i] = berth.Runtime.RunPodSandbox(ctx, cfg, "")
			if codeOf(errs[i]) != "DeadlineExceeded" {
				break
			}
		}
	})
	for i, id := range ids {
		if id != "" {
			id := id
			t.Cleanup(func() { removePod(t, berth, id) })
		}
		if errs[i] != nil {
			t.Errorf("pod %d: %v", i, errs[i])
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" {
			continue
		}
		ip := podStatus(t, berth, id).GetNetwork().GetIp()
		if ip == "" || seen[ip] {
			t.Errorf("pod %s has IP %q (duplicate or missing)", id, ip)
		}
		seen[ip] = true
	}
}

func TestPodsReachEachOtherByIP(t *testing.T) {
	t.Parallel()
	server := runPod(t, berth, podConfig("server"))
	client := runPod(t, berth, podConfig("client"))
	startInPod(t, server, "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www")
	ip := podStatus(t, berth, server).GetNetwork().GetIp()
	eventually(t, 20*time.Second, func() error {
		out, err := inPod(t, client, "timeout 3 wget -q -O - http://"+ip+":8080/")
		if err != nil || out != "pong" {
			return fmt.Errorf("wget from the client pod: %v: %q", err, out)
		}
		return nil
	})
}

func TestHostPortIsReachableOnLoopback(t *testing.T) {
	t.Parallel()
	port := framework.FreePort(t)
	cfg := podConfig("hostport")
	cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(port)}}
	id := runPod(t, berth, cfg)
	startInPod(t, id, "mkdir -p /www && echo via-hostport > /www/index.html && exec httpd -f -p 8080 -h /www")
	eventually(t, 20*time.Second, func() error {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != "via-hostport" {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})
	// After the pod stops, the port no longer leads anywhere.
	if err := berth.Runtime.StopPodSandbox(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		resp.Body.Close()
		t.Errorf("the host port still answers after StopPodSandbox")
	}
}

func TestDNSConfigReachesContainers(t *testing.T) {
	t.Parallel()
	cfg := podConfig("dns")
	cfg.DnsConfig = &runtimeapi.DNSConfig{
		Servers:  []string{"10.96.0.10"},
		Searches: []string{"berth-e2e.svc.cluster.local", "svc.cluster.local"},
		Options:  []string{"ndots:5", "timeout:2"},
	}
	id := runPod(t, berth, cfg)
	out, err := inPod(t, id, "cat /etc/resolv.conf")
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"nameserver 10.96.0.10", "search berth-e2e.svc.cluster.local svc.cluster.local", "ndots:5", "timeout:2"} {
		if !strings.Contains(out, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, out)
		}
	}
}

func TestHostNetworkPod(t *testing.T) {
	t.Parallel()
	cfg := podConfig("hostnet")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	id := runPod(t, berth, cfg)
	st := podStatus(t, berth, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() != "" {
		t.Errorf("state %v ip %q: want READY without an IP of its own", st.State, st.GetNetwork().GetIp())
	}
	if st.GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		t.Errorf("namespaces = %v", st.GetLinux().GetNamespaces().GetOptions())
	}
	mode, _ := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", id)
	if mode != "host" {
		t.Errorf("network mode %q", mode)
	}
	host, _ := os.Hostname()
	if out, err := inPod(t, id, "hostname"); err != nil || out != host {
		t.Errorf("hostname in a host-network pod = %q (%v), want the host's %q", out, err, host)
	}
}

func TestPodHostnameSysctlsAndCgroupParent(t *testing.T) {
	t.Parallel()
	cfg := podConfig("knobs")
	cfg.Hostname = "pod-host-name"
	parent, rel := testCgroupParent(t)
	cfg.Linux.CgroupParent = parent
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "53", "kernel.shm_rmid_forced": "1"}
	id := runPod(t, berth, cfg)
	if out, err := inPod(t, id, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"); err != nil || out != "53" {
		t.Errorf("sysctl in the pod's network namespace = %q (%v), want 53", out, err)
	}
	if h, _ := docker(t, "inspect", "-f", "{{.Config.Hostname}}", id); h != "pod-host-name" {
		t.Errorf("pause hostname = %q", h)
	}
	// Docker's systemd driver takes the slice's name, not its path
	// (kubepods-burstable-pod<uid>.slice).
	wantParent := parent
	if dockerCgroupDriver(t) == "systemd" {
		wantParent = filepath.Base(parent)
	}
	if p, _ := docker(t, "inspect", "-f", "{{.HostConfig.CgroupParent}}", id); p != wantParent {
		t.Errorf("cgroup parent = %q, want %q", p, wantParent)
	}
	if dir := podCgroupDir(t, id, "memory"); cgroups.Relative(dir) != rel {
		t.Errorf("the pause container's cgroup is under %s, want %s", dir, rel)
	}
}

func TestRuntimeHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The daemon's default runtime, named explicitly: "runc" on Debian's
	// Docker; the test engine's own runc elsewhere (see compatibility.md).
	dc, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	info, err := dc.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	handler := info.Info.DefaultRuntime
	id, err := berth.Runtime.RunPodSandbox(ctx, podConfig("handler"), handler)
	if err != nil {
		t.Fatalf("RunPodSandbox with handler %s: %v", handler, err)
	}
	t.Cleanup(func() { removePod(t, berth, id) })
	if st, _ := berth.Runtime.PodSandboxStatus(ctx, id, false); st.GetStatus().GetRuntimeHandler() != handler {
		t.Errorf("runtime handler = %q", st.GetStatus().GetRuntimeHandler())
	}
	if rt, _ := docker(t, "inspect", "-f", "{{.HostConfig.Runtime}}", id); rt != handler {
		t.Errorf("docker runtime = %q", rt)
	}
	_, err = berth.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("badhandler"), RuntimeHandler: "kata-nope"})
	wantCode(t, err, codes.InvalidArgument, "runtime_handler")
}

func TestPodSandboxValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		mod   func(*runtimeapi.PodSandboxConfig)
		code  codes.Code
		field string
	}{
		{"no metadata", func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }, codes.InvalidArgument, "config.metadata"},
		{"no name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }, codes.InvalidArgument, "config.metadata.name"},
		{"no namespace", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "" }, codes.InvalidArgument, "config.metadata.namespace"},
		{"no uid", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "" }, codes.InvalidArgument, "config.metadata.uid"},
		{"bad name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a_b" }, codes.InvalidArgument, "config.metadata.name"},
		{"bad dns", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"dns.example"}}
		}, codes.InvalidArgument, "config.dns_config.servers[0]"},
		{"bad port", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 0, HostPort: 80}}
		}, codes.InvalidArgument, "config.port_mappings[0].container_port"},
		{"user namespace without mappings", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}}
		}, codes.InvalidArgument, "userns_options.uids"},
		{"container network", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Network: runtimeapi.NamespaceMode_CONTAINER}}
		}, codes.InvalidArgument, "namespace_options.network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig("invalid")
			tc.mod(cfg)
			_, err := berth.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			wantCode(t, err, tc.code, tc.field)
		})
	}
	_, err := berth.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{})
	wantCode(t, err, codes.InvalidArgument, "config")
	_, err = berth.RuntimeClient.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "0123456789abcdef-nope"})
	wantCode(t, err, codes.NotFound, "0123456789abcdef-nope")
	_, err = berth.RuntimeClient.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{})
	wantCode(t, err, codes.InvalidArgument, "pod_sandbox_id")
	for _, call := range []func() error{
		func() error { return berth.Runtime.StopPodSandbox(ctx, "no-such-sandbox") },
		func() error { return berth.Runtime.RemovePodSandbox(ctx, "no-such-sandbox") },
	} {
		if err := call(); err != nil {
			t.Errorf("Stop/Remove of an unknown sandbox: %v, want success", err)
		}
	}
	if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_POD_invalid"); out != "" {
		t.Errorf("refused requests left containers: %s", out)
	}
}

func TestListPodSandboxFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := podConfig("list-a")
	a.Labels["tier"] = "front"
	b := podConfig("list-b")
	b.Labels["tier"] = "back"
	idA := runPod(t, berth, a)
	idB := runPod(t, berth, b)
	if err := berth.Runtime.StopPodSandbox(ctx, idB); err != nil {
		t.Fatal(err)
	}
	mine := map[string]string{"berth-e2e-run": runID}
	check := func(name string, f *runtimeapi.PodSandboxFilter, want ...string) {
		t.Helper()
		items, err := berth.Runtime.ListPodSandbox(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range items {
			if it.Id == idA || it.Id == idB {
				got = append(got, it.Id)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	check("all mine", &runtimeapi.PodSandboxFilter{LabelSelector: mine}, idA, idB)
	check("label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"tier": "front", "berth-e2e-run": runID}}, idA)
	check("ready", &runtimeapi.PodSandboxFilter{LabelSelector: mine, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, idA)
	check("not ready", &runtimeapi.PodSandboxFilter{LabelSelector: mine, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, idB)
	check("id prefix", &runtimeapi.PodSandboxFilter{Id: idB[:12]}, idB)

	// The streaming form returns the same.
	stream, err := berth.RuntimeClient.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: mine}})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for _, resp := range recvAll(t, stream.Recv) {
		for _, it := range resp.PodSandboxes {
			if it.Id == idA || it.Id == idB {
				streamed = append(streamed, it.Id)
			}
		}
	}
	if len(streamed) != 2 {
		t.Errorf("StreamPodSandboxes gave %v", streamed)
	}
}

func TestPodSandboxStatusVerbose(t *testing.T) {
	t.Parallel()
	// Without the bandwidth plugin, whose Debian build panics on CHECK.
	n := framework.NewCNINetwork(t, framework.CNIOptions{NoBandwidth: true})
	b := framework.StartBerth(t, framework.Options{Args: n.Args()})
	id := runPod(t, b, podConfig("verbose"))
	resp, err := b.Runtime.PodSandboxStatus(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid          int      `json:"pid"`
		Netns        string   `json:"netns"`
		IPs          []string `json:"ips"`
		NetworkCheck string   `json:"networkCheck"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.Pid == 0 || info.Netns == "" || len(info.IPs) == 0 || info.NetworkCheck != "ok" {
		t.Errorf("verbose info = %q (%v)", resp.Info["info"], err)
	}
	if resp.Timestamp == 0 {
		t.Errorf("no timestamp with verbose")
	}
}

// TestPodSandboxStatusContainerStatusesOnlyWhenVerbose: a PodSandboxStatus
// kubelet makes (no verbose) carries no timestamp and no container
// statuses, so that kubelet 1.37 with EventedPLEG asks ContainerStatus and
// keeps init containers working (internal/cri/sandbox_status.go says why);
// with verbose they are there, the newest container first.
func TestPodSandboxStatusContainerStatusesOnlyWhenVerbose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "sbstatus-ctrs")
	first := p.run(t, containerConfig("first", "exec sleep 3600"))
	second := p.create(t, containerConfig("second", "true"))
	plain, err := berth.Runtime.PodSandboxStatus(ctx, p.id, false)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Timestamp != 0 || len(plain.ContainersStatuses) != 0 || len(plain.Info) != 0 {
		t.Errorf("without verbose: timestamp %d, %d container statuses, info %v; want none", plain.Timestamp, len(plain.ContainersStatuses), plain.Info)
	}
	before := time.Now().UnixNano()
	resp, err := berth.Runtime.PodSandboxStatus(ctx, p.id, true)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Timestamp < before {
		t.Errorf("verbose: timestamp %d, want one taken by the call (after %d)", resp.Timestamp, before)
	}
	var ids []string
	for _, cs := range resp.ContainersStatuses {
		ids = append(ids, cs.Id)
	}
	if len(ids) != 2 || ids[0] != second || ids[1] != first {
		t.Fatalf("verbose: container statuses of %v, want %s then %s (newest first)", ids, second, first)
	}
	for _, cs := range resp.ContainersStatuses {
		want := containerStatus(t, berth, cs.Id)
		if cs.State != want.State || cs.Metadata.GetName() != want.Metadata.GetName() || cs.CreatedAt != want.CreatedAt ||
			cs.StartedAt != want.StartedAt || cs.ImageRef != want.ImageRef {
			t.Errorf("PodSandboxStatus has %v for %s; ContainerStatus says %v", cs, cs.Id, want)
		}
	}
}

func TestUpdatePodSandboxResources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	id := runPod(t, berth, podConfig("resize"))
	_, err := berth.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: id, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 256 << 20}})
	if err != nil {
		t.Errorf("UpdatePodSandboxResources: %v", err)
	}
	_, err = berth.RuntimeClient.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope-nope"})
	wantCode(t, err, codes.NotFound, "nope-nope")
}
