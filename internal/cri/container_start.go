package cri

import (
	"context"
	"errors"
	"fmt"
	"os"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// StartContainer starts a created container and begins forwarding its
// output to its CRI log file.
func (s *Service) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.guard.locks.lock(c.ID)
	defer unlock()
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		return &runtimeapi.StartContainerResponse{}, nil
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return nil, fmt.Errorf("container %s is %v; only a created container can be started: %w", dockerspec.ShortID(c.ID), c.State, errdefs.ErrFailedPrecondition)
	}
	var startErr error
	if c.RestoreCheckpoint != "" {
		// Made by RestorePod from a checkpoint with process state: the
		// processes come back from CRIU's images instead of starting.
		startErr = s.docker.StartContainerFromCheckpoint(ctx, c.ID, c.RestoreCheckpoint)
	} else {
		startErr = s.docker.StartContainer(ctx, c.ID)
	}
	// Docker's view after the attempt: running, or exited with the reason
	// the start failed (e.g. a missing executable).
	s.refreshContainerByID(ctx, c.ID)
	if startErr != nil {
		return nil, fmt.Errorf("starting container %s: %w", dockerspec.ShortID(c.ID), startErr)
	}
	c, _ = s.store.Container(c.ID)
	if err := s.checkContainerUserns(c); err != nil {
		_ = s.docker.StopContainer(ctx, c.ID, 0, "")
		s.refreshContainerByID(ctx, c.ID)
		return nil, err
	}
	if err := s.applyExtraCgroups(c); err != nil {
		_ = s.docker.StopContainer(ctx, c.ID, 0, "")
		s.refreshContainerByID(ctx, c.ID)
		return nil, err
	}
	logging.FromContext(ctx).Info("container started", "id", dockerspec.ShortID(c.ID))
	return &runtimeapi.StartContainerResponse{}, nil
}

// checkContainerUserns fails when a container of a pod with a user
// namespace of its own does not run in its pause container's: a runtime
// wrapper that failed open (its own checks make runc fail first) is
// caught here, and the container is stopped.
func (s *Service) checkContainerUserns(c *store.Container) error {
	sb, ok := s.store.Sandbox(c.SandboxID)
	if !ok || !dockerspec.PodUserns(sb.Namespaces) || c.Pid == 0 || sb.Pid == 0 {
		return nil
	}
	own, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", c.Pid))
	pod, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", sb.Pid))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w: reading the user namespaces of container %s and its pod: %w", errdefs.ErrInternal, dockerspec.ShortID(c.ID), err)
	}
	if own != pod {
		return fmt.Errorf("%w: container %s runs in user namespace %s, not its pod's %s: the runtime did not apply the pod's user namespace; stopped it",
			errdefs.ErrInternal, dockerspec.ShortID(c.ID), own, pod)
	}
	return nil
}
