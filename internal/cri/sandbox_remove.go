package cri

import (
	"context"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// RemovePodSandbox removes the pod's containers, its network if still set
// up, its pause container and its checkpoint. Removing an unknown sandbox
// succeeds.
func (s *Service) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeSandbox(ctx, sb.ID); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// removeSandbox does RemovePodSandbox's work, taking the id's lock.
func (s *Service) removeSandbox(ctx context.Context, id string) error {
	unlock := s.guard.locks.lock(id)
	defer unlock()
	sb, ok := s.store.Sandbox(id)
	if !ok {
		return nil
	}
	for _, c := range s.store.ContainersOf(id) {
		if err := s.removeContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("removing container %s of the pod: %w", dockerspec.ShortID(c.ID), err)
		}
	}
	if err := s.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	if !sb.ContainerGone {
		if err := ignoreNotFound(s.docker.RemoveContainer(ctx, id)); err != nil {
			return fmt.Errorf("removing the pause container: %w", err)
		}
	}
	if err := s.checkpoints.Delete(id); err != nil {
		return fmt.Errorf("%w: deleting the sandbox checkpoint: %w", errdefs.ErrInternal, err)
	}
	s.store.DeleteSandbox(id)
	logging.FromContext(ctx).Info("pod sandbox removed", "sandbox", dockerspec.ShortID(id))
	return nil
}
