package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

const mib = 1 << 20

// podWithCgroup runs a pod with a cgroup parent of its own (as kubelet
// gives every pod), so it has a pod-level cgroup; the cgroup is removed
// after the pod.
func podWithCgroup(t *testing.T, b *framework.Berth, name string) *pod {
	t.Helper()
	cfg := podConfig(name)
	cfg.LogDirectory = t.TempDir()
	cfg.Linux.CgroupParent, _ = testCgroupParent(t) // removed after the pod
	return &pod{b: b, id: runPod(t, b, cfg), cfg: cfg}
}

// boostCPU gives a pod's cgroup the highest CPU weight, so that a busy
// loop in it gets a whole core even on a machine shared with other
// builds and tests.
func boostCPU(t *testing.T, p *pod) {
	t.Helper()
	dir, file, value := podCgroupDir(t, p.id, "cpu"), "cpu.shares", "262144"
	if cgroups.IsV2() {
		file, value = "cpu.weight", "10000"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
		t.Fatalf("raising the pod's CPU weight: %v", err)
	}
}

// kernelCgroup reads a container's cgroup files from the host, the kernel's
// own figures to check Berth's against.
type kernelCgroup struct {
	t     *testing.T
	paths map[string]string
}

func kernelCgroupOf(t *testing.T, id string) kernelCgroup {
	t.Helper()
	paths, err := cgroups.Paths(containerPid(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return kernelCgroup{t: t, paths: paths}
}

func (k kernelCgroup) file(controller, name string) string {
	k.t.Helper()
	dir := k.paths[controller]
	if cgroups.IsV2() {
		dir = k.paths[""]
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		k.t.Fatal(err)
	}
	return string(data)
}

func (k kernelCgroup) key(controller, name, key string) uint64 {
	k.t.Helper()
	for _, line := range strings.Split(k.file(controller, name), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			return v
		}
	}
	k.t.Fatalf("no %s in %s", key, name)
	return 0
}

func (k kernelCgroup) number(controller, name string) uint64 {
	k.t.Helper()
	v, err := strconv.ParseUint(strings.TrimSpace(k.file(controller, name)), 10, 64)
	if err != nil {
		k.t.Fatal(err)
	}
	return v
}

// workingSet is usage − inactive file, from the kernel's files.
func (k kernelCgroup) workingSet() uint64 {
	var usage, inactive uint64
	if cgroups.IsV2() {
		usage, inactive = k.number("", "memory.current"), k.key("", "memory.stat", "inactive_file")
	} else {
		usage, inactive = k.number("memory", "memory.usage_in_bytes"), k.key("memory", "memory.stat", "total_inactive_file")
	}
	return usage - min(usage, inactive)
}

// cpuNs is the cumulative CPU time, from the kernel's files.
func (k kernelCgroup) cpuNs() uint64 {
	if cgroups.IsV2() {
		return k.key("", "cpu.stat", "usage_usec") * 1000
	}
	return k.number("cpuacct", "cpuacct.usage")
}

func containerStats(t *testing.T, b *framework.Berth, id string) *runtimeapi.ContainerStats {
	t.Helper()
	st, err := b.Runtime.ContainerStats(context.Background(), id)
	if err != nil {
		t.Fatalf("ContainerStats(%s): %v", id, err)
	}
	return st
}

func podStats(t *testing.T, b *framework.Berth, id string) *runtimeapi.PodSandboxStats {
	t.Helper()
	st, err := b.Runtime.PodSandboxStats(context.Background(), id)
	if err != nil {
		t.Fatalf("PodSandboxStats(%s): %v", id, err)
	}
	return st
}

func TestContainerStatsMemoryWorkingSet(t *testing.T) {
	p := podWithCgroup(t, berth, "stats-mem")
	// dd holds its 120 MiB block while sleep never reads the pipe.
	id := p.run(t, containerConfig("hog", "dd if=/dev/zero bs=120M count=1 | sleep 3600"))
	k := kernelCgroupOf(t, id)

	var ws uint64
	eventually(t, 2*time.Minute, func() error {
		before := k.workingSet()
		st := containerStats(t, berth, id)
		after := k.workingSet()
		ws = st.GetMemory().GetWorkingSetBytes().GetValue()
		if ws < 100*mib {
			return fmt.Errorf("working set %d MiB, want at least 100", ws/mib)
		}
		// Within what the kernel said right before and after (plus slack
		// for the shell and dd moving pages meanwhile).
		if ws+4*mib < min(before, after) || ws > max(before, after)+4*mib {
			return fmt.Errorf("working set %d, the kernel says %d then %d", ws, before, after)
		}
		return nil
	})
	st := containerStats(t, berth, id)
	m := st.GetMemory()
	if m.GetUsageBytes().GetValue() < m.GetWorkingSetBytes().GetValue() || m.GetRssBytes().GetValue() < 100*mib ||
		m.GetPageFaults().GetValue() == 0 || m.Timestamp <= 0 {
		t.Errorf("memory stats %v", m)
	}
	if m.AvailableBytes != nil {
		t.Errorf("available bytes %v for a container without a memory limit", m.AvailableBytes)
	}
	if a := st.GetAttributes(); a.GetId() != id || a.GetMetadata().GetName() != "hog" || a.GetLabels()["berth-e2e-run"] != runID {
		t.Errorf("attributes %v", a)
	}
	if st.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("cpu stats %v", st.GetCpu())
	}

	// The pod-level cgroup holds the container's memory too.
	ps := podStats(t, berth, p.id)
	if got := ps.GetLinux().GetMemory().GetWorkingSetBytes().GetValue(); got < 100*mib {
		t.Errorf("pod working set %d MiB, want at least 100", got/mib)
	}
	if n := ps.GetLinux().GetProcess().GetProcessCount().GetValue(); n < 3 {
		t.Errorf("pod process count %d, want pause, sh, dd and sleep", n)
	}
	if cs := ps.GetLinux().GetContainers(); len(cs) != 1 || cs[0].GetMemory().GetWorkingSetBytes().GetValue() < 100*mib {
		t.Errorf("pod's container stats %v", cs)
	}
}

func TestContainerStatsCPURate(t *testing.T) {
	p := podWithCgroup(t, berth, "stats-cpu")
	boostCPU(t, p)
	id := p.run(t, containerConfig("spin", "while :; do :; done"))
	k := kernelCgroupOf(t, id)

	// The rate needs two samples of the background sampler; the loop may
	// get less than a core for a while on a loaded machine even so: wait
	// for a reading in range, but never accept an impossible one.
	eventually(t, 2*time.Minute, func() error {
		before := k.cpuNs()
		st := containerStats(t, berth, id)
		after := k.cpuNs()
		cpu := st.GetCpu()
		if used := cpu.GetUsageCoreNanoSeconds().GetValue(); used < before || used > after {
			t.Fatalf("cpu usage %d ns, the kernel says %d then %d", used, before, after)
		}
		if cpu.UsageNanoCores == nil {
			return fmt.Errorf("no usage_nano_cores yet")
		}
		cores := float64(cpu.UsageNanoCores.Value) / 1e9
		if cores > 1.5 {
			t.Fatalf("a single busy loop uses %.2f cores", cores)
		}
		if cores < 0.5 {
			return fmt.Errorf("%.2f cores, want 0.5-1.5", cores)
		}
		t.Logf("busy loop: %.2f cores", cores)
		return nil
	})
	// The rate agrees with the kernel's counter over a window of its own
	// (the two windows differ: allow a wide margin).
	first := containerStats(t, berth, id).GetCpu()
	time.Sleep(8 * time.Second)
	second := containerStats(t, berth, id).GetCpu()
	measured := float64(second.UsageCoreNanoSeconds.Value-first.UsageCoreNanoSeconds.Value) / float64(second.Timestamp-first.Timestamp)
	reported := float64(second.GetUsageNanoCores().GetValue()) / 1e9
	if reported < measured*0.6 || reported > measured*1.4 {
		t.Errorf("usage_nano_cores says %.2f cores, the counter %.2f over the last 8s", reported, measured)
	}
	eventually(t, time.Minute, func() error {
		cpu := podStats(t, berth, p.id).GetLinux().GetCpu()
		if cpu.UsageNanoCores == nil || cpu.UsageNanoCores.Value < 0.5e9 {
			return fmt.Errorf("pod cpu %v, want at least half a core", cpu)
		}
		return nil
	})
}

func TestPodSandboxStatsNetwork(t *testing.T) {
	server := newPod(t, berth, "stats-net-server")
	client := newPod(t, berth, "stats-net-client")
	const size = 5 * mib
	startInPod(t, server.id, fmt.Sprintf("mkdir -p /www && head -c %d /dev/zero > /www/big && exec httpd -f -p 8080 -h /www", size))
	ip := podStatus(t, berth, server.id).GetNetwork().GetIp()

	tx := func() uint64 {
		n := podStats(t, berth, server.id).GetLinux().GetNetwork()
		// Interfaces lists every interface, the default one too, as
		// kubelet's Summary API (and containerd) have it.
		if n.GetDefaultInterface().GetName() != "eth0" || n.Timestamp <= 0 || len(n.GetInterfaces()) != 1 || n.GetInterfaces()[0].GetName() != "eth0" {
			t.Fatalf("server pod network %v", n)
		}
		return n.GetDefaultInterface().GetTxBytes().GetValue()
	}
	kernelTx := func() uint64 {
		out, err := inPod(t, server.id, "cat /sys/class/net/eth0/statistics/tx_bytes")
		v, perr := strconv.ParseUint(out, 10, 64)
		if err != nil || perr != nil {
			t.Fatalf("tx_bytes in the pod: %q %v", out, err)
		}
		return v
	}
	before := tx()
	eventually(t, 30*time.Second, func() error {
		out, err := inPod(t, client.id, "wget -q -O - http://"+ip+":8080/big | wc -c")
		if err != nil || strings.TrimSpace(out) != strconv.Itoa(size) {
			return fmt.Errorf("downloading from the server pod: %v: %q", err, out)
		}
		return nil
	})
	k1 := kernelTx()
	after := tx()
	k2 := kernelTx()
	if after-before < size {
		t.Errorf("server pod sent %d bytes by its stats, want at least %d", after-before, size)
	}
	if after < k1 || after > k2 {
		t.Errorf("server pod tx %d, the kernel says %d then %d", after, k1, k2)
	}
	// The client received them.
	if rx := podStats(t, berth, client.id).GetLinux().GetNetwork().GetDefaultInterface().GetRxBytes().GetValue(); rx < size {
		t.Errorf("client pod received %d bytes, want at least %d", rx, size)
	}
}

func TestStatsFilters(t *testing.T) {
	ctx := context.Background()
	pods := []*pod{newPod(t, berth, "stats-filter-a"), newPod(t, berth, "stats-filter-b")}
	var ids []string
	for i, p := range pods {
		cfg := containerConfig("c", "sleep 3600")
		cfg.Labels["stats-filter"] = fmt.Sprint(i)
		ids = append(ids, p.run(t, cfg))
	}
	idsOf := func(stats []*runtimeapi.ContainerStats) []string {
		var out []string
		for _, s := range stats {
			out = append(out, s.GetAttributes().GetId())
		}
		return out
	}
	for _, c := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		{"id", &runtimeapi.ContainerStatsFilter{Id: ids[1]}, ids[1:]},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: ids[0][:12]}, ids[:1]},
		{"pod sandbox id", &runtimeapi.ContainerStatsFilter{PodSandboxId: pods[0].id}, ids[:1]},
		{"labels", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"stats-filter": "1", "berth-e2e-run": runID}}, ids[1:]},
		{"run label", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"berth-e2e-run": runID}}, ids},
		{"no match", &runtimeapi.ContainerStatsFilter{PodSandboxId: pods[0].id, LabelSelector: map[string]string{"stats-filter": "1"}}, nil},
		{"unknown id", &runtimeapi.ContainerStatsFilter{Id: "0000nothere"}, nil},
	} {
		t.Run("containers/"+c.name, func(t *testing.T) {
			got, err := berth.Runtime.ListContainerStats(ctx, c.filter)
			if err != nil {
				t.Fatal(err)
			}
			if g := idsOf(got); strings.Join(g, ",") != strings.Join(c.want, ",") {
				t.Errorf("ListContainerStats(%v) = %v, want %v", c.filter, g, c.want)
			}
			// The stream variant returns the same.
			stream, err := berth.RuntimeClient.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: c.filter})
			if err != nil {
				t.Fatal(err)
			}
			var streamed []*runtimeapi.ContainerStats
			for _, resp := range recvAll(t, stream.Recv) {
				streamed = append(streamed, resp.ContainerStats...)
			}
			if g := idsOf(streamed); strings.Join(g, ",") != strings.Join(c.want, ",") {
				t.Errorf("StreamContainerStats(%v) = %v, want %v", c.filter, g, c.want)
			}
		})
	}

	podIDs := func(stats []*runtimeapi.PodSandboxStats) []string {
		var out []string
		for _, s := range stats {
			out = append(out, s.GetAttributes().GetId())
		}
		return out
	}
	for _, c := range []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{"id", &runtimeapi.PodSandboxStatsFilter{Id: pods[1].id}, []string{pods[1].id}},
		{"labels", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "stats-filter-a", "berth-e2e-run": runID}}, []string{pods[0].id}},
		{"no match", &runtimeapi.PodSandboxStatsFilter{Id: pods[0].id, LabelSelector: map[string]string{"app": "stats-filter-b"}}, nil},
	} {
		t.Run("pods/"+c.name, func(t *testing.T) {
			got, err := berth.Runtime.ListPodSandboxStats(ctx, c.filter)
			if err != nil {
				t.Fatal(err)
			}
			if g := podIDs(got); strings.Join(g, ",") != strings.Join(c.want, ",") {
				t.Errorf("ListPodSandboxStats(%v) = %v, want %v", c.filter, g, c.want)
			}
			for _, s := range got {
				if cs := s.GetLinux().GetContainers(); len(cs) != 1 {
					t.Errorf("pod %s has %d container stats, want 1", s.GetAttributes().GetId(), len(cs))
				}
			}
			stream, err := berth.RuntimeClient.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: c.filter})
			if err != nil {
				t.Fatal(err)
			}
			var streamed []*runtimeapi.PodSandboxStats
			for _, resp := range recvAll(t, stream.Recv) {
				streamed = append(streamed, resp.PodSandboxStats...)
			}
			if g := podIDs(streamed); strings.Join(g, ",") != strings.Join(c.want, ",") {
				t.Errorf("StreamPodSandboxStats(%v) = %v, want %v", c.filter, g, c.want)
			}
		})
	}

	// A container that is not running has attributes (and its writable
	// layer once measured), no CPU or memory figures.
	if err := berth.Runtime.StopContainer(ctx, ids[0], 1); err != nil {
		t.Fatal(err)
	}
	st := containerStats(t, berth, ids[0])
	if st.GetAttributes().GetId() != ids[0] || st.Cpu != nil || st.Memory != nil {
		t.Errorf("stats of a stopped container: %v", st)
	}
	if _, err := berth.Runtime.ContainerStats(ctx, "0000nothere"); codeOf(err) != "NotFound" {
		t.Errorf("ContainerStats of an unknown id: %v, want NotFound", err)
	}
	if _, err := berth.Runtime.PodSandboxStats(ctx, "0000nothere"); codeOf(err) != "NotFound" {
		t.Errorf("PodSandboxStats of an unknown id: %v, want NotFound", err)
	}
}

func TestContainerStatsWritableLayer(t *testing.T) {
	p := newPod(t, berth, "stats-layer")
	id := p.run(t, containerConfig("writer", "head -c 3000000 /dev/zero > /big && sleep 3600"))
	eventually(t, 3*time.Minute, func() error {
		wl := containerStats(t, berth, id).GetWritableLayer()
		if wl.GetUsedBytes().GetValue() < 3000000 {
			return fmt.Errorf("writable layer %v, want at least 3000000 bytes", wl)
		}
		if wl.GetFsId().GetMountpoint() == "" || wl.Timestamp <= 0 {
			return fmt.Errorf("writable layer %v", wl)
		}
		return nil
	})
}

func TestPodSandboxMetrics(t *testing.T) {
	ctx := context.Background()
	p := podWithCgroup(t, berth, "metrics")
	id := p.run(t, containerConfig("app", "dd if=/dev/zero bs=20M count=1 | sleep 3600"))

	descs, err := berth.Runtime.ListMetricDescriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range descs {
		keys[d.Name] = d.LabelKeys
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total", "container_fs_usage_bytes"} {
		if k := keys[name]; len(k) < 6 || strings.Join(k[:6], ",") != "container,id,image,name,namespace,pod" {
			t.Errorf("descriptor %s: label keys %v", name, k)
		}
	}

	// find returns the value of a metric whose labels include want.
	var pm *runtimeapi.PodSandboxMetrics
	find := func(metrics []*runtimeapi.Metric, name string, want map[string]string) (uint64, bool) {
		for _, m := range metrics {
			if m.Name != name {
				continue
			}
			ok := true
			for k, v := range want {
				i := indexOf(keys[name], k)
				if i < 0 || i >= len(m.LabelValues) || m.LabelValues[i] != v {
					ok = false
				}
			}
			if ok {
				return m.GetValue().GetValue(), true
			}
		}
		return 0, false
	}
	eventually(t, time.Minute, func() error {
		all, err := berth.Runtime.ListPodSandboxMetrics(ctx)
		if err != nil {
			return err
		}
		pm = nil
		for _, m := range all {
			if m.PodSandboxId == p.id {
				pm = m
			}
		}
		if pm == nil {
			return fmt.Errorf("no metrics for pod %s", p.id)
		}
		if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != id {
			return fmt.Errorf("container metrics %v", pm.ContainerMetrics)
		}
		if ws, ok := find(pm.ContainerMetrics[0].Metrics, "container_memory_working_set_bytes", map[string]string{
			"container": "app", "namespace": "berth-e2e", "pod": "metrics", "image": "busybox"}); !ok || ws < 20*mib {
			return fmt.Errorf("container working set %d (found %v), want at least 20 MiB", ws, ok)
		}
		return nil
	})
	for _, m := range append(append([]*runtimeapi.Metric{}, pm.Metrics...), pm.ContainerMetrics[0].Metrics...) {
		if k, ok := keys[m.Name]; !ok || len(k) != len(m.LabelValues) {
			t.Errorf("metric %s: label values %v for keys %v", m.Name, m.LabelValues, k)
		}
	}
	// Pod level: the pod cgroup's figures (container="") and the pod's
	// network on the pause container's row (container="POD").
	if ws, ok := find(pm.Metrics, "container_memory_working_set_bytes", map[string]string{"container": "", "pod": "metrics"}); !ok || ws < 20*mib {
		t.Errorf("pod-level working set %d (found %v)", ws, ok)
	}
	if _, ok := find(pm.Metrics, "container_network_receive_bytes_total", map[string]string{"container": "POD", "interface": "eth0"}); !ok {
		t.Errorf("no network metrics for the pod")
	}

	stream, err := berth.RuntimeClient.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, resp := range recvAll(t, stream.Recv) {
		for _, m := range resp.PodSandboxMetrics {
			found = found || m.PodSandboxId == p.id
		}
	}
	if !found {
		t.Errorf("StreamPodSandboxMetrics did not return pod %s", p.id)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// kernelPressure returns the "some" total (µs) of a PSI file of a
// container's cgroup, and whether the kernel keeps the file there (cgroup
// v2, or a hybrid host's unified hierarchy, with PSI on: Debian's kernels
// need psi=1).
func (k kernelCgroup) pressure(file string) (uint64, bool) {
	k.t.Helper()
	dir := k.paths[""]
	if dir == "" {
		return 0, false
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, false
	}
	p, err := parsePSISome(string(data))
	if err != nil {
		k.t.Fatalf("%s: %v", file, err)
	}
	return p, true
}

func parsePSISome(data string) (uint64, error) {
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "some" {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				return strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no some total in %q", data)
}

// TestContainerStatsPressure: where the kernel keeps pressure stall
// information for a container's cgroup, ContainerStats, PodSandboxStats
// and the metrics carry it, no newer than the kernel's own figure; where it
// keeps none, they carry none.
func TestContainerStatsPressure(t *testing.T) {
	ctx := context.Background()
	p := podWithCgroup(t, berth, "stats-psi")
	id := p.run(t, containerConfig("spin", "while :; do :; done"))
	k := kernelCgroupOf(t, id)
	_, havePSI := k.pressure("cpu.pressure")
	t.Logf("PSI in the container's cgroup: %v (%s)", havePSI, k.paths[""])

	eventually(t, 2*time.Minute, func() error {
		st := containerStats(t, berth, id)
		if st.GetCpu().UsageNanoCores == nil {
			return fmt.Errorf("the sampler has not read the cgroup twice yet")
		}
		if !havePSI {
			if st.GetCpu().Psi != nil || st.GetMemory().Psi != nil || st.GetIo().GetPsi() != nil {
				t.Fatalf("PSI figures %v %v %v where the kernel has none", st.GetCpu().Psi, st.GetMemory().Psi, st.GetIo())
			}
			return nil
		}
		for _, c := range []struct {
			file string
			psi  *runtimeapi.PsiStats
		}{{"cpu.pressure", st.GetCpu().GetPsi()}, {"memory.pressure", st.GetMemory().GetPsi()}, {"io.pressure", st.GetIo().GetPsi()}} {
			if c.psi == nil || c.psi.Some == nil || c.psi.Full == nil {
				return fmt.Errorf("%s: PSI %v", c.file, c.psi)
			}
			kernel, _ := k.pressure(c.file)
			if c.psi.Some.Total > kernel*1000 {
				t.Fatalf("%s: some total %d ns, later than the kernel's %d µs", c.file, c.psi.Some.Total, kernel)
			}
		}
		return nil
	})
	if !havePSI {
		return
	}
	if ps := podStats(t, berth, p.id).GetLinux(); ps.GetCpu().GetPsi() == nil || ps.GetMemory().GetPsi() == nil {
		t.Errorf("pod-level PSI: cpu %v, memory %v", ps.GetCpu().GetPsi(), ps.GetMemory().GetPsi())
	}
	all, err := berth.Runtime.ListPodSandboxMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pm := range all {
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				found = found || (cm.ContainerId == id && m.Name == "container_pressure_cpu_waiting_seconds_total")
			}
		}
	}
	if !found {
		t.Errorf("no container_pressure_cpu_waiting_seconds_total for the container")
	}
}
