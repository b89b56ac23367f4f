package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/checkpoints"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/store"
)

// ForCheckpoints is the service as internal/cri/checkpoints uses it:
// RestorePod makes its pod and containers through the runtime, and every
// checkpoint call takes the runtime's locks.
func (s *Service) ForCheckpoints() checkpoints.Runtime { return checkpointRuntime{s} }

type checkpointRuntime struct{ s *Service }

func (r checkpointRuntime) Lock(id string) func() { return r.s.guard.locks.lock(id) }

func (r checkpointRuntime) DaemonReady(ctx context.Context) (docker.Health, error) {
	return r.s.daemonReady(ctx)
}

func (r checkpointRuntime) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	return r.s.RunPodSandbox(ctx, req)
}

func (r checkpointRuntime) RemoveSandbox(ctx context.Context, id string) error {
	return r.s.removeSandbox(ctx, id)
}

func (r checkpointRuntime) CreateContainer(ctx context.Context, sb *store.Sandbox, cfg *runtimeapi.ContainerConfig, name string, labels map[string]string) (string, error) {
	return r.s.createContainer(ctx, sb, cfg, name, labels)
}

func (r checkpointRuntime) RemoveContainer(ctx context.Context, id string) error {
	return r.s.removeContainer(ctx, id)
}
