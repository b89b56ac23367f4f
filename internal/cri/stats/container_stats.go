package stats

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/chunk"
	"github.com/berth-cri/berth/internal/errdefs"
	kernelstats "github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// ContainerStats reads one container's figures from its cgroup (see
// stats_helpers.go): no Docker call.
func (s *Service) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(ctx, c, s.containerFs())}, nil
}

// ListContainerStats reads the figures of every container the filter
// matches (running or not: a stopped container has its writable layer
// only).
func (s *Service) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

// StreamContainerStats is ListContainerStats in chunks.
func (s *Service) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	items := s.listContainerStats(stream.Context(), req.GetFilter())
	return chunk.Send(items, chunk.Size, func(c []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: c})
	})
}

func (s *Service) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	records := s.store.Containers(func(c *store.Container) bool {
		return store.ContainerMatch(c, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	})
	fs := s.containerFs()
	out := make([]*runtimeapi.ContainerStats, len(records))
	forEach(ctx, len(records), func(i int) { out[i] = s.containerStats(ctx, records[i], fs) })
	return out
}

// containerStats is one container's stats: attributes, its cgroup's
// figures while it runs, and its writable layer.
func (s *Service) containerStats(ctx context.Context, c *store.Container, fs *kernelstats.FsUsage) *runtimeapi.ContainerStats {
	cs, _, _ := s.containerStatsRaw(ctx, c, fs)
	return cs
}

// containerStatsRaw is containerStats, also returning the raw figures
// (ok false when the container has none: not running, or just exited),
// for pod-level sums.
func (s *Service) containerStatsRaw(ctx context.Context, c *store.Container, fs *kernelstats.FsUsage) (*runtimeapi.ContainerStats, cgroupUsage, bool) {
	cs := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    c.Metadata,
			Labels:      c.Labels,
			Annotations: c.Annotations,
		},
		WritableLayer: s.writableLayer(ctx, c.ID, fs),
	}
	cg, ok := s.containerCgroup(c)
	if !ok {
		return cs, cgroupUsage{}, false
	}
	_, u, ok := s.readUsage(c.ID, cg, 0)
	if !ok {
		return cs, cgroupUsage{}, false
	}
	cs.Cpu, cs.Memory, cs.Swap, cs.Io = u.cpu, u.memory, u.swap, u.io
	return cs, u, true
}
