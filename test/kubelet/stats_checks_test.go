package kubelet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// statsPods are the running pods whose figures the stats checks compare.
var statsPods = []string{podLogger, podGuaranteed, podHostPort}

// checkStats checks that /stats/summary has plausible node, pod and
// container figures, and that kubelet asks Berth for them: in the default
// mode containers' figures come from ListContainerStats, in cri-only
// everything comes from ListPodSandboxStats.
func checkStats(t *testing.T, e *env) {
	logger := e.podName(podLogger)
	guaranteed := e.podName(podGuaranteed)
	rpc := "ListContainerStats"
	if e.mode.name == modeCRIOnly {
		rpc = "ListPodSandboxStats"
	}
	ctx := context.Background()
	e.eventually(t, 2*time.Minute, "/stats/summary with plausible figures", func() error {
		before, err := e.berthRPCs(ctx, rpc)
		if err != nil {
			return err
		}
		s, err := e.kc.Summary(ctx)
		if err != nil {
			return err
		}
		after, err := e.berthRPCs(ctx, rpc)
		if err != nil {
			return err
		}
		if after <= before {
			return fmt.Errorf("Berth served no %s while kubelet built its summary (%v before, %v after)", rpc, before, after)
		}
		if s.Node.CPU == nil || ptrVal(s.Node.CPU.UsageCoreNanoSeconds) == 0 || s.Node.Memory == nil || ptrVal(s.Node.Memory.WorkingSetBytes) == 0 {
			return fmt.Errorf("node stats without CPU or memory: %+v", s.Node)
		}
		pods := map[string]statsapi.PodStats{}
		for _, p := range s.Pods {
			pods[p.PodRef.Name] = p
		}
		for _, name := range []string{logger, guaranteed} {
			p, ok := pods[name]
			if !ok {
				return fmt.Errorf("pod %s not in the summary (%d pods)", name, len(s.Pods))
			}
			if p.CPU == nil || p.Memory == nil || ptrVal(p.Memory.WorkingSetBytes) == 0 {
				return fmt.Errorf("pod %s: no pod-level CPU or memory", name)
			}
			if len(p.Containers) != 1 {
				return fmt.Errorf("pod %s: %d containers in the summary, want 1", name, len(p.Containers))
			}
			if err := plausibleContainer(p.Containers[0]); err != nil {
				return fmt.Errorf("pod %s: %w", name, err)
			}
		}
		// The guaranteed container lives within its 64 MiB limit.
		if ws := ptrVal(pods[guaranteed].Containers[0].Memory.WorkingSetBytes); ws > 64<<20 {
			return fmt.Errorf("guaranteed container working set %d > its 64Mi limit", ws)
		}
		// The logger has written to its log for a while.
		if used := ptrVal(pods[logger].Containers[0].Logs.UsedBytes); used < 1024 {
			return fmt.Errorf("logger's logs use %d bytes, want at least 1 KiB", used)
		}
		for _, name := range statsPods {
			if p, ok := pods[e.podName(name)]; ok {
				t.Logf("%s: %s", name, describePodStats(p))
			}
		}
		return nil
	})
}

// plausibleContainer checks a container's figures in the summary.
func plausibleContainer(c statsapi.ContainerStats) error {
	switch {
	case c.CPU == nil || ptrVal(c.CPU.UsageCoreNanoSeconds) == 0:
		return fmt.Errorf("container %s: no cumulative CPU usage", c.Name)
	case c.CPU.UsageNanoCores == nil:
		return fmt.Errorf("container %s: no CPU rate", c.Name)
	case c.Memory == nil || ptrVal(c.Memory.WorkingSetBytes) == 0:
		return fmt.Errorf("container %s: no memory working set", c.Name)
	case c.Memory.UsageBytes != nil && *c.Memory.WorkingSetBytes > *c.Memory.UsageBytes:
		return fmt.Errorf("container %s: working set %d > usage %d", c.Name, *c.Memory.WorkingSetBytes, *c.Memory.UsageBytes)
	case *c.Memory.WorkingSetBytes > 1<<30:
		return fmt.Errorf("container %s: working set %d bytes for a busybox loop", c.Name, *c.Memory.WorkingSetBytes)
	case c.Rootfs == nil || c.Rootfs.UsedBytes == nil || c.Rootfs.CapacityBytes == nil || *c.Rootfs.UsedBytes > *c.Rootfs.CapacityBytes:
		return fmt.Errorf("container %s: rootfs %+v, want used bytes within capacity", c.Name, c.Rootfs)
	case c.Logs == nil || c.Logs.UsedBytes == nil || c.Logs.CapacityBytes == nil || *c.Logs.UsedBytes > *c.Logs.CapacityBytes:
		return fmt.Errorf("container %s: logs %+v, want used bytes within capacity", c.Name, c.Logs)
	}
	return nil
}

// describePodStats is a pod's summary figures in one line, for the log.
func describePodStats(p statsapi.PodStats) string {
	var b strings.Builder
	if p.CPU != nil {
		fmt.Fprintf(&b, "cpu %dns (%d nanocores)", ptrVal(p.CPU.UsageCoreNanoSeconds), ptrVal(p.CPU.UsageNanoCores))
	}
	if p.Memory != nil {
		fmt.Fprintf(&b, ", working set %d", ptrVal(p.Memory.WorkingSetBytes))
	}
	if p.Network != nil {
		fmt.Fprintf(&b, ", network %s rx %d tx %d", p.Network.Name, ptrVal(p.Network.RxBytes), ptrVal(p.Network.TxBytes))
	} else {
		b.WriteString(", no network figures")
	}
	if p.ProcessStats != nil {
		fmt.Fprintf(&b, ", %d processes", ptrVal(p.ProcessStats.ProcessCount))
	}
	return b.String()
}

// checkStatsFromCRI checks, with PodAndContainerStatsFromCRI, that the
// summary's pod and container figures are Berth's: every cumulative figure
// lies between two ListPodSandboxStats calls made just before and just
// after the summary, and the pods' network figures (which kubelet's
// cAdvisor cannot see in a pod's network namespace) are Berth's eth0.
func checkStatsFromCRI(t *testing.T, e *env) {
	e.waitRunning(t, podHostPort, "web")
	ctx := context.Background()
	e.eventually(t, 2*time.Minute, "/stats/summary between two ListPodSandboxStats", func() error {
		first, err := e.berth.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{})
		if err != nil {
			return err
		}
		s, err := e.kc.Summary(ctx)
		if err != nil {
			return err
		}
		second, err := e.berth.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{})
		if err != nil {
			return err
		}
		for _, name := range statsPods {
			pod := e.podName(name)
			var ps *statsapi.PodStats
			for i := range s.Pods {
				if s.Pods[i].PodRef.Name == pod && s.Pods[i].PodRef.Namespace == namespace {
					ps = &s.Pods[i]
				}
			}
			if ps == nil {
				return fmt.Errorf("pod %s not in the summary", pod)
			}
			b1, b2 := sandboxStats(first, ps.PodRef.UID), sandboxStats(second, ps.PodRef.UID)
			if b1 == nil || b2 == nil || b1.GetAttributes().GetId() != b2.GetAttributes().GetId() {
				return fmt.Errorf("pod %s: no stats from Berth for its sandbox in both calls", pod)
			}
			if err := podStatsBetween(ps, b1, b2); err != nil {
				return fmt.Errorf("pod %s: %w", pod, err)
			}
		}
		// The hostport and port-forward checks sent HTTP through the
		// hostport pod's eth0.
		for i := range s.Pods {
			if p := s.Pods[i]; p.PodRef.Name == e.podName(podHostPort) && (ptrVal(p.Network.RxBytes) == 0 || ptrVal(p.Network.TxBytes) == 0) {
				return fmt.Errorf("pod %s: network rx %d, tx %d bytes after HTTP requests to it", p.PodRef.Name, ptrVal(p.Network.RxBytes), ptrVal(p.Network.TxBytes))
			}
		}
		return nil
	})
}

// hasInterface reports whether the summary lists an interface of that name.
func hasInterface(ifs []statsapi.InterfaceStats, name string) bool {
	for _, i := range ifs {
		if i.Name == name {
			return true
		}
	}
	return false
}

// sandboxStats finds pod uid's sandbox in a ListPodSandboxStats answer.
func sandboxStats(list []*runtimeapi.PodSandboxStats, uid string) *runtimeapi.PodSandboxStats {
	for _, s := range list {
		if s.GetAttributes().GetMetadata().GetUid() == uid && s.GetLinux() != nil {
			return s
		}
	}
	return nil
}

// podStatsBetween checks that a pod's summary figures are Berth's: each
// cumulative counter lies between Berth's readings b1 (before the summary)
// and b2 (after it); gauges are present and non-zero where Berth's are.
func podStatsBetween(ps *statsapi.PodStats, b1, b2 *runtimeapi.PodSandboxStats) error {
	l1, l2 := b1.GetLinux(), b2.GetLinux()
	if ps.CPU == nil || ptrVal(ps.CPU.UsageCoreNanoSeconds) == 0 || ps.Memory == nil || ps.Network == nil {
		return fmt.Errorf("summary without pod CPU, memory or network: %s", describePodStats(*ps))
	}
	if err := between("pod CPU ns", l1.GetCpu().GetUsageCoreNanoSeconds().GetValue(), ptrVal(ps.CPU.UsageCoreNanoSeconds), l2.GetCpu().GetUsageCoreNanoSeconds().GetValue()); err != nil {
		return err
	}
	if ptrVal(ps.Memory.WorkingSetBytes) == 0 || l2.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		return fmt.Errorf("pod working set %d in the summary, %d from Berth", ptrVal(ps.Memory.WorkingSetBytes), l2.GetMemory().GetWorkingSetBytes().GetValue())
	}
	i1, i2 := l1.GetNetwork().GetDefaultInterface(), l2.GetNetwork().GetDefaultInterface()
	if ps.Network.Name != "eth0" || i2.GetName() != "eth0" {
		return fmt.Errorf("default interface %q in the summary, %q from Berth; want eth0", ps.Network.Name, i2.GetName())
	}
	// The node suite's Summary API spec wants the list of interfaces too:
	// every interface, eth0 included, as kubelet's cAdvisor gives it.
	if !hasInterface(ps.Network.Interfaces, "eth0") {
		return fmt.Errorf("summary's interfaces %v, want eth0 among them", ps.Network.Interfaces)
	}
	if err := between("rx bytes", i1.GetRxBytes().GetValue(), ptrVal(ps.Network.RxBytes), i2.GetRxBytes().GetValue()); err != nil {
		return err
	}
	if err := between("tx bytes", i1.GetTxBytes().GetValue(), ptrVal(ps.Network.TxBytes), i2.GetTxBytes().GetValue()); err != nil {
		return err
	}
	if ps.ProcessStats == nil || ptrVal(ps.ProcessStats.ProcessCount) == 0 {
		return fmt.Errorf("no process count in the summary")
	}
	if len(ps.Containers) != len(l2.GetContainers()) {
		return fmt.Errorf("%d containers in the summary, %d from Berth", len(ps.Containers), len(l2.GetContainers()))
	}
	for _, c := range ps.Containers {
		c1, c2 := containerStats(l1.GetContainers(), c.Name), containerStats(l2.GetContainers(), c.Name)
		if c1 == nil || c2 == nil {
			return fmt.Errorf("container %s: not in both of Berth's answers", c.Name)
		}
		if c.CPU == nil {
			return fmt.Errorf("container %s: no CPU figures", c.Name)
		}
		if err := between("container "+c.Name+" CPU ns", c1.GetCpu().GetUsageCoreNanoSeconds().GetValue(), ptrVal(c.CPU.UsageCoreNanoSeconds), c2.GetCpu().GetUsageCoreNanoSeconds().GetValue()); err != nil {
			return err
		}
		if err := plausibleContainer(c); err != nil {
			return err
		}
	}
	return nil
}

func containerStats(list []*runtimeapi.ContainerStats, name string) *runtimeapi.ContainerStats {
	for _, c := range list {
		if c.GetAttributes().GetMetadata().GetName() == name {
			return c
		}
	}
	return nil
}

// between checks lo <= v <= hi for a counter read by Berth at lo and hi.
// (A pod that sent nothing has zero transmit bytes throughout.)
func between(what string, lo, v, hi uint64) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: %d in the summary, Berth read %d before and %d after", what, v, lo, hi)
	}
	return nil
}

// checkCadvisorMetrics checks that with PodAndContainerStatsFromCRI
// kubelet's /metrics/cadvisor serves Berth's ListPodSandboxMetrics: the
// cAdvisor names and labels, per container and per pod (the pause
// container, "POD", carrying the network).
func checkCadvisorMetrics(t *testing.T, e *env) {
	ctx := context.Background()
	limited := map[string]string{"namespace": namespace, "pod": e.podName(podGuaranteed), "container": "limited"}
	log := map[string]string{"namespace": namespace, "pod": e.podName(podLogger), "container": "log"}
	web := map[string]string{"namespace": namespace, "pod": e.podName(podHostPort), "container": "POD", "interface": "eth0"}
	e.eventually(t, 2*time.Minute, "/metrics/cadvisor from ListPodSandboxMetrics", func() error {
		before, err := e.berthRPCs(ctx, "ListPodSandboxMetrics")
		if err != nil {
			return err
		}
		text, err := e.kc.CadvisorMetrics(ctx)
		if err != nil {
			return err
		}
		after, err := e.berthRPCs(ctx, "ListPodSandboxMetrics")
		if err != nil {
			return err
		}
		if after <= before {
			return fmt.Errorf("Berth served no ListPodSandboxMetrics while kubelet served /metrics/cadvisor (%v before, %v after)", before, after)
		}
		// kubelet asks for the descriptors once, when it starts; without
		// them it serves no container metrics until it restarts.
		if n, err := e.berthRPCs(ctx, "ListMetricDescriptors"); err != nil || n < 1 {
			return fmt.Errorf("Berth served %v ListMetricDescriptors calls (%v), want kubelet's", n, err)
		}
		if strings.Contains(e.kubelet.Log(), "Error reading MetricDescriptors") {
			return fmt.Errorf("kubelet could not read Berth's metric descriptors:\n%s", e.kubelet.tail(40))
		}
		fams, err := parseMetrics(text)
		if err != nil {
			return err
		}
		if _, ok := sample(fams, "container_cpu_usage_seconds_total", log); !ok {
			return fmt.Errorf("no container_cpu_usage_seconds_total %v", log)
		}
		if v, ok := sample(fams, "container_memory_working_set_bytes", limited); !ok || v == 0 || v > 64<<20 {
			return fmt.Errorf("container_memory_working_set_bytes %v = %v (%t), want within (0, 64Mi]", limited, v, ok)
		}
		if v, ok := sample(fams, "container_spec_memory_limit_bytes", limited); !ok || v != 64<<20 {
			return fmt.Errorf("container_spec_memory_limit_bytes %v = %v (%t), want 64Mi", limited, v, ok)
		}
		for _, name := range []string{"container_network_receive_bytes_total", "container_network_transmit_bytes_total"} {
			if v, ok := sample(fams, name, web); !ok || v == 0 {
				return fmt.Errorf("%s %v = %v (%t), want the HTTP traffic's bytes", name, web, v, ok)
			}
		}
		// cAdvisor's labels: the Docker container name, the image and the
		// cgroup path.
		for _, m := range fams["container_cpu_usage_seconds_total"].GetMetric() {
			if labelsMatch(m, log) {
				l := labelMap(m)
				if !strings.HasPrefix(l["name"], "k8s_log_") || l["image"] == "" || l["id"] == "" {
					return fmt.Errorf("container_cpu_usage_seconds_total labels %v, want name k8s_log_…, image and id", l)
				}
			}
		}
		return nil
	})
}

// berthRPCs is how many calls of CRI method Berth has answered with OK.
func (e *env) berthRPCs(ctx context.Context, method string) (float64, error) {
	fams, err := e.scrapeBerth(ctx)
	if err != nil {
		return 0, err
	}
	v, _ := sample(fams, "berth_cri_requests_total", map[string]string{"method": method, "code": "OK"})
	return v, nil
}

// scrapeBerth reads Berth's /metrics.
func (e *env) scrapeBerth(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.berthMetrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", e.berthMetrics, resp.StatusCode)
	}
	return parseMetrics(string(body))
}

func parseMetrics(text string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// sample sums the samples of metric name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, m := range fams[name].GetMetric() {
		if !labelsMatch(m, want) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	l := labelMap(m)
	for k, v := range want {
		if l[k] != v {
			return false
		}
	}
	return true
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

func ptrVal[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
