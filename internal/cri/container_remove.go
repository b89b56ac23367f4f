package cri

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// RemoveContainer removes a container, killing it if it runs. Removing an
// unknown container succeeds. The CRI log file stays: kubelet removes it.
func (s *Service) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, c.ID); err != nil {
		return nil, err
	}
	logging.FromContext(ctx).Info("container removed", "id", dockerspec.ShortID(c.ID))
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// removeContainer removes a container, its log forwarding state and its
// record, under the container's lock.
func (s *Service) removeContainer(ctx context.Context, id string) error {
	unlock := s.guard.locks.lock(id)
	defer unlock()
	if err := ignoreNotFound(s.docker.RemoveContainer(ctx, id)); err != nil {
		return err
	}
	if s.logs != nil {
		s.logs.Forget(id)
	}
	s.store.DeleteContainer(id)
	return nil
}
