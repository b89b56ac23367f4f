package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
)

// ReopenContainerLog is the second half of kubelet's log rotation: kubelet
// renamed the container's log file, and from now on the output goes to a
// new file at the original path. No line is lost or written twice.
func (s *Service) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %s is not running: %w", dockerspec.ShortID(c.ID), errdefs.ErrFailedPrecondition)
	}
	if c.LogPath == "" || s.logs == nil {
		return nil, fmt.Errorf("container %s has no log file: %w", dockerspec.ShortID(c.ID), errdefs.ErrFailedPrecondition)
	}
	if err := s.logs.Reopen(c.ID); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
