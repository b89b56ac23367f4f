package stats

import (
	"context"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/chunk"
	"github.com/berth-cri/berth/internal/errdefs"
	kernelstats "github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// PodSandboxStats reads one pod's figures: its pod-level cgroup, its
// network namespace and its containers. No Docker call.
func (s *Service) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podStats(ctx, sb, s.store.ContainersOf(sb.ID), s.containerFs())}, nil
}

// ListPodSandboxStats reads the figures of every pod the filter matches.
func (s *Service) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(ctx, req.GetFilter())}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats in chunks.
func (s *Service) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	items := s.listPodStats(stream.Context(), req.GetFilter())
	return chunk.Send(items, chunk.Size, func(c []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: c})
	})
}

func (s *Service) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	sandboxes := s.store.Sandboxes(func(sb *store.Sandbox) bool {
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			return false
		}
		return store.MatchLabels(sb.Labels, f.GetLabelSelector())
	})
	bySandbox := s.containersBySandbox()
	fs := s.containerFs()
	out := make([]*runtimeapi.PodSandboxStats, len(sandboxes))
	forEach(ctx, len(sandboxes), func(i int) { out[i] = s.podStats(ctx, sandboxes[i], bySandbox[sandboxes[i].ID], fs) })
	return out
}

// containersBySandbox groups every container by its sandbox, in one pass
// over the index.
func (s *Service) containersBySandbox() map[string][]*store.Container {
	out := map[string][]*store.Container{}
	for _, c := range s.store.Containers(nil) {
		out[c.SandboxID] = append(out[c.SandboxID], c)
	}
	return out
}

// podStats is one pod's stats. The pod-level figures come from the pod's
// cgroup (the cgroup parent kubelet gave it); a pod without one (no cgroup
// parent: not started by kubelet) gets the sum of its pause container and
// containers instead, without a memory limit.
func (s *Service) podStats(ctx context.Context, sb *store.Sandbox, containers []*store.Container, fs *kernelstats.FsUsage) *runtimeapi.PodSandboxStats {
	ps := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    sb.Metadata,
			Labels:      sb.Labels,
			Annotations: sb.Annotations,
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	var parts []cgroupUsage
	for _, c := range containers {
		cs, u, ok := s.containerStatsRaw(ctx, c, fs)
		ps.Linux.Containers = append(ps.Linux.Containers, cs)
		if ok {
			parts = append(parts, u)
		}
	}
	if !sb.Running || sb.ContainerGone {
		return ps
	}
	if cg, ok := s.podCgroup(sb); ok {
		if _, u, ok := s.readUsage(podKeyPrefix+sb.ID, cg, kernelstats.FieldPids); ok {
			ps.Linux.Cpu, ps.Linux.Memory, ps.Linux.Io, ps.Linux.Process = u.cpu, u.memory, u.io, u.pids
		}
	} else if cg, ok := s.pauseCgroup(sb); ok {
		if _, u, ok := s.readUsage(sb.ID, cg, kernelstats.FieldPids); ok {
			sum := sumUsage(append(parts, u))
			ps.Linux.Cpu, ps.Linux.Memory, ps.Linux.Process = sum.cpu, sum.memory, sum.pids
		}
	}
	ps.Linux.Network = s.podNetwork(sb)
	return ps
}

// podNetwork reads the interfaces of the pod's network namespace through
// its pause process; nil for host-network pods (their figures would be
// the node's).
func (s *Service) podNetwork(sb *store.Sandbox) *runtimeapi.NetworkUsage {
	if sb.Namespaces.GetNetwork() == runtimeapi.NamespaceMode_NODE || sb.Pid <= 0 {
		return nil
	}
	cg, ok := s.pauseCgroup(sb) // its open files hold net/dev too
	if !ok {
		return nil
	}
	ifs, err := kernelstats.NetDevFiles(sb.Pid, cg.Files)
	if err != nil {
		return nil
	}
	return networkUsage(time.Now().UnixNano(), ifs)
}

// networkUsage converts interfaces; eth0 (the interface CNI and Docker
// create) is the default one, or the first when there is no eth0.
// Interfaces lists every interface, the default one too: the CRI comment
// says "excluding the default", but kubelet's Summary API copies the list
// as it is, and there (as from cAdvisor, and as containerd 2.x reports it)
// the list is every interface; a pod with only eth0 would otherwise have
// none, which the node suite's Summary API spec rejects.
func networkUsage(ts int64, ifs []kernelstats.Interface) *runtimeapi.NetworkUsage {
	if len(ifs) == 0 {
		return nil
	}
	def := 0
	for i, ifc := range ifs {
		if ifc.Name == "eth0" {
			def = i
			break
		}
	}
	conv := func(i kernelstats.Interface) *runtimeapi.NetworkInterfaceUsage {
		return &runtimeapi.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
		}
	}
	out := &runtimeapi.NetworkUsage{Timestamp: ts, Interfaces: make([]*runtimeapi.NetworkInterfaceUsage, len(ifs))}
	for i, ifc := range ifs {
		out.Interfaces[i] = conv(ifc)
	}
	out.DefaultInterface = out.Interfaces[def]
	return out
}

// sumUsage adds up cgroups' figures. A rate is summed only when every part
// has one.
func sumUsage(parts []cgroupUsage) cgroupUsage {
	if len(parts) == 0 {
		return cgroupUsage{}
	}
	ts := time.Now().UnixNano()
	add := func(dst **runtimeapi.UInt64Value, v *runtimeapi.UInt64Value) {
		if v == nil {
			return
		}
		if *dst == nil {
			*dst = &runtimeapi.UInt64Value{}
		}
		(*dst).Value += v.Value
	}
	cpu := &runtimeapi.CpuUsage{Timestamp: ts}
	mem := &runtimeapi.MemoryUsage{Timestamp: ts}
	pids := &runtimeapi.ProcessUsage{Timestamp: ts}
	rates := true
	for _, p := range parts {
		if p.cpu != nil {
			add(&cpu.UsageCoreNanoSeconds, p.cpu.UsageCoreNanoSeconds)
			add(&cpu.UsageNanoCores, p.cpu.UsageNanoCores)
			rates = rates && p.cpu.UsageNanoCores != nil
		}
		if m := p.memory; m != nil {
			add(&mem.WorkingSetBytes, m.WorkingSetBytes)
			add(&mem.UsageBytes, m.UsageBytes)
			add(&mem.RssBytes, m.RssBytes)
			add(&mem.PageFaults, m.PageFaults)
			add(&mem.MajorPageFaults, m.MajorPageFaults)
		}
		if p.pids != nil {
			add(&pids.ProcessCount, p.pids.ProcessCount)
		}
	}
	if !rates {
		cpu.UsageNanoCores = nil
	}
	out := cgroupUsage{cpu: cpu, memory: mem}
	if pids.ProcessCount != nil {
		out.pids = pids
	}
	return out
}
