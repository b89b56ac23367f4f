package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// StopContainer sends the container's stop signal (its config's, else its
// image's, else SIGTERM), waits up to the timeout, then kills it. Stopping
// an unknown or stopped container succeeds.
func (s *Service) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	if req.GetTimeout() < 0 {
		return nil, errdefs.InvalidArgument("timeout", "must not be negative")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.guard.locks.lock(c.ID)
	defer unlock()
	signal := ""
	if c.StopSignal != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		signal = dockerspec.SignalName(c.StopSignal)
	}
	if err := ignoreNotFound(s.docker.StopContainer(ctx, c.ID, time.Duration(req.GetTimeout())*time.Second, signal)); err != nil {
		return nil, fmt.Errorf("stopping container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	s.refreshContainerByID(ctx, c.ID)
	logging.FromContext(ctx).Info("container stopped", "id", dockerspec.ShortID(c.ID))
	return &runtimeapi.StopContainerResponse{}, nil
}
