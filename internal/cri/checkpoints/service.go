// Package checkpoints serves the CRI's checkpoint RPCs on Docker:
// CheckpointContainer and CheckpointPod write archives in CRI-O's layout
// (internal/archive), with the processes dumped by Docker's checkpoint API
// (CRIU); RestorePod makes a pod and its containers from such a checkpoint
// through the runtime (internal/cri), whose StartContainer then restores
// the processes.
package checkpoints

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/store"
)

// Docker is the part of the Docker client that checkpoints containers and
// puts their files back.
type Docker interface {
	InspectContainer(ctx context.Context, id string) (container.InspectResponse, error)
	// CheckpointContainer dumps a running container's processes with
	// CRIU into dir/name (experimental daemons only).
	CheckpointContainer(ctx context.Context, id, dir, name string) error
	ContainerChanges(ctx context.Context, id string) ([]container.FilesystemChange, error)
	CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, error)
	CopyToContainer(ctx context.Context, id, dir string, content io.Reader) error
	PauseContainer(ctx context.Context, id string) error
	UnpauseContainer(ctx context.Context, id string) error
	// ImageID resolves an image reference to the image's id.
	ImageID(ctx context.Context, ref string) (string, error)
}

// Runtime is what checkpoints need of the runtime service (internal/cri):
// its locks, so that a checkpoint and the runtime's calls on one object do
// not interleave, and the making and removing of the objects a restore
// makes, with the runtime's bookkeeping.
type Runtime interface {
	// Lock takes the runtime's lock of one sandbox or container id.
	Lock(id string) (unlock func())
	// DaemonReady returns Docker's health, probing it now if it was
	// away, or an error wrapping errdefs.ErrUnavailable.
	DaemonReady(ctx context.Context) (docker.Health, error)
	RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error)
	// RemoveSandbox removes a sandbox and its containers, under its lock.
	RemoveSandbox(ctx context.Context, id string) error
	// CreateContainer creates a container named name in sb, with Docker
	// labels extra to those of cfg.
	CreateContainer(ctx context.Context, sb *store.Sandbox, cfg *runtimeapi.ContainerConfig, name string, labels map[string]string) (string, error)
	// RemoveContainer removes a container, under its lock.
	RemoveContainer(ctx context.Context, id string) error
}

// Deps are what the checkpoint service is built from.
type Deps struct {
	Config  config.Config
	Docker  Docker
	Runtime Runtime
	// Store is the runtime's index of sandboxes and containers.
	Store *store.Store
}

// Service serves CheckpointContainer, CheckpointPod and RestorePod of
// runtime.v1 RuntimeService (cri.Server routes them here).
type Service struct {
	docker  Docker
	runtime Runtime
	store   *store.Store
	// rootDir is --root-dir, under which checkpoints and restores stage
	// their files (checkpoints/).
	rootDir string
	// requestTimeout is --runtime-request-timeout: a resume after a
	// checkpoint gets this long, a pod checkpoint or restore without a
	// deadline twice this.
	requestTimeout time.Duration
}

// New returns the service. It does no I/O.
func New(d Deps) *Service {
	return &Service{
		docker:         d.Docker,
		runtime:        d.Runtime,
		store:          d.Store,
		rootDir:        d.Config.RootDir,
		requestTimeout: d.Config.RuntimeRequestTimeout,
	}
}
