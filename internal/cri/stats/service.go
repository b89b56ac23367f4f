// Package stats serves the CRI's stats and metrics RPCs: container and pod
// stats, metric descriptors and pod sandbox metrics, and their Stream*
// variants. The figures are read from the kernel (internal/stats), never
// from Docker's stats endpoint (which costs dockerd a cgroup walk and a
// stream set-up per container): a container's cgroup is found once from
// its pid (/proc/<pid>/cgroup) and cached; each stats call reads a few
// small cgroup files per container; a background sampler keeps two CPU
// readings per cgroup for the rate; the writable layers are measured in
// the background (images.LayerSampler). The objects are those of the
// runtime's index (internal/store); no call here asks Docker anything.
package stats

import (
	"context"
	"time"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/panics"
	kernelstats "github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// Daemon reports the Docker daemon as last seen: where it keeps the
// containers' writable layers.
type Daemon interface {
	Health() docker.Health
}

// WritableLayers reports the last measure of a container's writable layer
// (internal/cri/images.LayerSampler).
type WritableLayers interface {
	// Container returns the usage and when it was measured; inodes are
	// unknown when inodesKnown is false, and ok is false when the layer
	// was not measured yet.
	Container(ctx context.Context, id string) (u kernelstats.DirUsage, at time.Time, inodesKnown, ok bool)
}

// Deps are what the stats service is built from.
type Deps struct {
	// Store is the runtime's index of sandboxes and containers.
	Store  *store.Store
	Daemon Daemon
	// Layers has the containers' writable-layer usage; nil reports none.
	Layers WritableLayers
}

// Service serves the stats and metrics RPCs of runtime.v1 RuntimeService
// (cri.Server routes them here).
type Service struct {
	store  *store.Store
	daemon Daemon
	layers WritableLayers
	// state is the cgroups, open files, CPU samples and filesystem the
	// calls share.
	state *statsState
}

// New returns the service. It does no I/O; Start runs its sampler.
func New(d Deps) *Service {
	s := &Service{store: d.Store, daemon: d.Daemon, layers: d.Layers}
	s.state = newStatsState(s.statsTargets)
	return s
}

// Start runs the CPU and PSI sampler until ctx ends and returns at once.
func (s *Service) Start(ctx context.Context) {
	panics.Go(ctx, panics.StatsSampler, func() { s.state.sampler.Run(ctx) })
}
