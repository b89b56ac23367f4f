package stats

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/cri/chunk"
	kernelstats "github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// metricFields is what ListPodSandboxMetrics reads of each cgroup: all of
// it (kubelet asks for metrics at Prometheus' scrape interval, not at
// housekeeping's).
const metricFields = kernelstats.FieldCPU | kernelstats.FieldCPUDetail | kernelstats.FieldMemory | kernelstats.FieldMemoryDetail |
	kernelstats.FieldPids | kernelstats.FieldPidsLimit | kernelstats.FieldPSI | kernelstats.FieldIO | kernelstats.FieldProcesses

// ListMetricDescriptors lists the cAdvisor-compatible metrics
// ListPodSandboxMetrics returns (kubelet's /metrics/cadvisor serves them
// when it takes pod and container stats from CRI).
func (s *Service) ListMetricDescriptors(ctx context.Context, _ *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: kernelstats.Descriptors()}, nil
}

// ListPodSandboxMetrics returns every running pod's metrics: the pod-level
// cgroup's (container=""), the pause container's with the pod's network
// (container="POD", as cAdvisor reported Docker pods), and each running
// container's.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: s.podMetrics(ctx)}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics in chunks.
func (s *Service) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	items := s.podMetrics(stream.Context())
	return chunk.Send(items, chunk.Size, func(c []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: c})
	})
}

func (s *Service) podMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	sandboxes := s.store.Sandboxes(func(sb *store.Sandbox) bool { return sb.Running && !sb.ContainerGone })
	bySandbox := s.containersBySandbox()
	fs := s.containerFs()
	now := time.Now()
	out := make([]*runtimeapi.PodSandboxMetrics, len(sandboxes))
	forEach(ctx, len(sandboxes), func(i int) {
		if ctx.Err() == nil {
			out[i] = s.sandboxMetrics(ctx, sandboxes[i], bySandbox[sandboxes[i].ID], fs, now)
		}
	})
	if ctx.Err() != nil {
		return nil // the caller is gone
	}
	return out
}

func (s *Service) sandboxMetrics(ctx context.Context, sb *store.Sandbox, containers []*store.Container, fs *kernelstats.FsUsage, now time.Time) *runtimeapi.PodSandboxMetrics {
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
	ns, pod := sb.Metadata.GetNamespace(), sb.Metadata.GetName()
	if cg, ok := s.podCgroup(sb); ok {
		if st, err := kernelstats.ReadCgroup(cg, metricFields); err == nil {
			pm.Metrics = append(pm.Metrics, kernelstats.Metrics(kernelstats.MetricSource{
				Labels:     []string{"", cgroupID(cg), "", "", ns, pod},
				Cgroup:     &st,
				DeviceName: kernelstats.BlockDeviceName,
				Now:        now,
			})...)
		}
	}
	if cg, ok := s.pauseCgroup(sb); ok {
		src := kernelstats.MetricSource{
			Labels:     []string{"POD", cgroupID(cg), sb.Image, sb.Name, ns, pod},
			Leaf:       true,
			DeviceName: kernelstats.BlockDeviceName,
			Now:        now,
		}
		if st, err := kernelstats.ReadCgroup(cg, metricFields); err == nil {
			src.Cgroup = &st
		}
		if sb.Namespaces.GetNetwork() != runtimeapi.NamespaceMode_NODE {
			src.Network, _ = kernelstats.NetDev(sb.Pid)
		}
		pm.Metrics = append(pm.Metrics, kernelstats.Metrics(src)...)
	}
	for _, c := range containers {
		cg, ok := s.containerCgroup(c)
		if !ok {
			continue
		}
		st, err := kernelstats.ReadCgroup(cg, metricFields)
		if err != nil {
			continue // it exited meanwhile
		}
		src := kernelstats.MetricSource{
			Labels:     []string{c.Metadata.GetName(), cgroupID(cg), imageLabel(c.Image), c.Name, ns, pod},
			Cgroup:     &st,
			Spec:       specOf(c.Resources),
			Leaf:       true,
			DeviceName: kernelstats.BlockDeviceName,
			Now:        now,
		}
		if c.StartedAt > 0 {
			src.Start = time.Unix(0, c.StartedAt)
		}
		if wl := s.writableLayer(ctx, c.ID, fs); wl != nil {
			src.Fs = &kernelstats.FsSample{
				Device:      fs.Device,
				UsedBytes:   wl.GetUsedBytes().GetValue(),
				LimitBytes:  fs.CapacityBytes,
				InodesTotal: fs.InodesTotal,
				InodesFree:  fs.InodesTotal - min(fs.InodesTotal, fs.InodesUsed),
				At:          time.Unix(0, wl.Timestamp),
			}
		}
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.ID,
			Metrics:     kernelstats.Metrics(src),
		})
	}
	return pm
}

// cgroupID is the cgroup's path within its hierarchy, the "id" label
// cAdvisor gives a container.
func cgroupID(cg kernelstats.Cgroup) string {
	if cg.V2 {
		return cgroups.Relative(cg.Paths[""])
	}
	if d, ok := cg.Paths["memory"]; ok {
		return cgroups.Relative(d)
	}
	if d, ok := cg.Paths["cpu"]; ok {
		return cgroups.Relative(d)
	}
	return ""
}

// imageLabel is the image as the pod spec names it (kubelet passes the
// resolved reference or id in image and the pod spec's in
// user_specified_image).
func imageLabel(img *runtimeapi.ImageSpec) string {
	if u := img.GetUserSpecifiedImage(); u != "" {
		return u
	}
	return img.GetImage()
}

// specOf is the spec metrics' view of a container's configured limits.
func specOf(r *runtimeapi.LinuxContainerResources) *kernelstats.Spec {
	if r == nil {
		return nil
	}
	nonNeg := func(v int64) uint64 { return uint64(max(v, 0)) }
	sp := &kernelstats.Spec{
		CPUShares:   nonNeg(r.CpuShares),
		CPUQuota:    nonNeg(r.CpuQuota),
		CPUPeriod:   nonNeg(r.CpuPeriod),
		MemoryLimit: nonNeg(r.MemoryLimitInBytes),
	}
	if r.MemorySwapLimitInBytes > r.MemoryLimitInBytes && r.MemoryLimitInBytes > 0 {
		sp.SwapLimit = uint64(r.MemorySwapLimitInBytes)
	}
	return sp
}
