package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
)

// pauseStopGrace is how long the pause container gets to exit on SIGTERM;
// Berth's pause program exits at once.
const pauseStopGrace = 10 * time.Second

// StopPodSandbox stops the pod's containers, tears down its network (CNI
// DEL, once) and stops the pause container. Stopping an unknown or stopped
// sandbox succeeds.
func (s *Service) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.guard.locks.lock(sb.ID)
	defer unlock()
	if err := s.stopSandbox(ctx, sb.ID); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopSandbox does StopPodSandbox's work; the caller holds the id's lock.
func (s *Service) stopSandbox(ctx context.Context, id string) error {
	log := logging.FromContext(ctx).With("sandbox", dockerspec.ShortID(id))
	sb, ok := s.store.Sandbox(id)
	if !ok {
		return nil
	}
	for _, c := range s.store.ContainersOf(id) {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if err := ignoreNotFound(s.docker.StopContainer(ctx, c.ID, 0, "")); err != nil {
			return fmt.Errorf("stopping container %s of the pod: %w", dockerspec.ShortID(c.ID), err)
		}
		// The index learns of the exit from Docker's events too, but the
		// caller must see it when the call returns.
		s.refreshContainerByID(ctx, c.ID)
	}
	if err := s.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	if !sb.ContainerGone {
		if err := ignoreNotFound(s.docker.StopContainer(ctx, id, pauseStopGrace, "")); err != nil {
			return fmt.Errorf("stopping the pause container: %w", err)
		}
	}
	s.store.UpdateSandbox(id, func(sb *store.Sandbox) {
		sb.Running = false
		sb.NetworkReady = false
	})
	log.Info("pod sandbox stopped")
	return nil
}

// teardownNetwork runs CNI DEL for a sandbox whose network is (or may be,
// after a crash during ADD) set up, and records that it is down, so DEL
// runs once per ADD even across restarts.
func (s *Service) teardownNetwork(ctx context.Context, sb *store.Sandbox) error {
	if !s.network.UsesCNI() || sb.Namespaces.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return nil
	}
	netns := ""
	if sb.Running && !sb.ContainerGone {
		netns = netnsIfRunning(sb.Pid)
	}
	if sb.Adopted || (!sb.Owned && !sb.CheckpointCorrupt) {
		// Made by cri-dockerd or dockershim (or another Berth): no
		// checkpoint of this Berth's, so DEL with the current
		// configuration, as they would have.
		if !sb.Running {
			return nil
		}
		return s.delWithCurrentConfig(ctx, sb, netns)
	}
	cp, err := s.checkpoints.Load(sb.ID)
	switch {
	case errors.Is(err, os.ErrNotExist) && sb.CheckpointCorrupt:
		// The record was quarantined: DEL with the current configuration,
		// which releases the pod's address all the same.
		if err := s.delWithCurrentConfig(ctx, sb, netns); err != nil {
			return err
		}
		s.store.UpdateSandbox(sb.ID, func(sb *store.Sandbox) { sb.CheckpointCorrupt = false })
		return nil
	case errors.Is(err, os.ErrNotExist):
		return nil // nothing was set up
	case errors.Is(err, checkpoint.ErrCorrupt):
		// Quarantined and logged; never blocks Stop or Remove.
		logging.FromContext(ctx).Error("the sandbox checkpoint is corrupt; tearing the network down with the current CNI configuration", "sandbox", sb.ID, "error", err)
		return s.delWithCurrentConfig(ctx, sb, netns)
	case err != nil:
		return fmt.Errorf("%w: reading the sandbox checkpoint: %w", errdefs.ErrInternal, err)
	}
	if cp.Network == nil || cp.Network.State == checkpoint.StateDown {
		return nil
	}
	if err := s.network.Del(ctx, sb.ID, fromCheckpointNetwork(cp.Network), netns); err != nil {
		return fmt.Errorf("%w: tearing down the pod network: %w", errdefs.ErrUnavailable, err)
	}
	cp.Network.State = checkpoint.StateDown
	if err := s.checkpoints.Save(cp); err != nil {
		// The network is down all the same. Failing here (a full disk
		// under --root-dir) would keep kubelet from ever stopping or
		// removing the pod; the record still says "up", so a later
		// Stop or Remove runs DEL once more, which CNI plugins must
		// accept.
		logging.FromContext(ctx).Warn("could not record that the pod network is down; CNI DEL will run again on the next stop or remove",
			"sandbox", sb.ID, "error", err)
	}
	return nil
}

// delWithCurrentConfig runs CNI DEL for a sandbox without a usable
// checkpoint, with the network configuration in place now.
func (s *Service) delWithCurrentConfig(ctx context.Context, sb *store.Sandbox, netns string) error {
	att, err := s.network.Prepare(network.PodNetwork{
		SandboxID: sb.ID, PodName: sb.Metadata.GetName(), PodNamespace: sb.Metadata.GetNamespace(),
		PodUID: sb.Metadata.GetUid(), NetNS: netns, Annotations: sb.Annotations,
	})
	if err != nil {
		return err
	}
	if err := s.network.Del(ctx, sb.ID, att, netns); err != nil {
		return fmt.Errorf("%w: tearing down the pod network: %w", errdefs.ErrUnavailable, err)
	}
	return nil
}
