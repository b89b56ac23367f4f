package cri

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// UpdateContainerResources changes a container's CPU and memory limits in
// place (kubelet's in-place resize). The new limits are in its cgroup and
// in ContainerStatus when the call returns.
func (s *Service) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	r := req.GetLinux()
	if r == nil {
		return nil, errdefs.InvalidArgument("linux", "is required")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.guard.locks.lock(c.ID)
	defer unlock()
	if c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		return nil, fmt.Errorf("container %s has exited: %w", dockerspec.ShortID(c.ID), errdefs.ErrFailedPrecondition)
	}
	res := &container.Resources{
		CPUPeriod:  r.GetCpuPeriod(),
		CPUQuota:   r.GetCpuQuota(),
		CPUShares:  r.GetCpuShares(),
		Memory:     r.GetMemoryLimitInBytes(),
		CpusetCpus: r.GetCpusetCpus(),
		CpusetMems: r.GetCpusetMems(),
	}
	switch {
	case r.GetMemorySwapLimitInBytes() != 0:
		res.MemorySwap = r.GetMemorySwapLimitInBytes()
	case res.Memory > 0 && c.Resources != nil && c.Resources.GetMemorySwapLimitInBytes() > 0 && c.Resources.GetMemorySwapLimitInBytes() < res.Memory:
		// Docker refuses a memory limit above the current memory+swap
		// limit; keep swap as it was relative to memory.
		res.MemorySwap = res.Memory + (c.Resources.GetMemorySwapLimitInBytes() - c.Resources.GetMemoryLimitInBytes())
	}
	if err := s.docker.UpdateContainerResources(ctx, c.ID, res); err != nil {
		return nil, fmt.Errorf("updating container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && c.Pid > 0 {
		for _, h := range r.GetHugepageLimits() {
			if h.GetLimit() == 0 {
				continue
			}
			if err := cgroups.SetHugetlb(c.Pid, h.GetPageSize(), h.GetLimit()); err != nil {
				return nil, fmt.Errorf("linux.hugepage_limits: %v: %w", err, errdefs.ErrFailedPrecondition)
			}
		}
		if len(r.GetUnified()) > 0 {
			if err := cgroups.SetUnified(c.Pid, r.GetUnified()); err != nil {
				return nil, fmt.Errorf("linux.unified: %v: %w", err, errdefs.ErrFailedPrecondition)
			}
		}
	}
	s.refreshContainerByID(ctx, c.ID)
	s.store.UpdateContainer(c.ID, func(rec *store.Container) {
		if rec.Resources != nil {
			cp := proto.Clone(rec.Resources).(*runtimeapi.LinuxContainerResources)
			if len(r.GetHugepageLimits()) > 0 {
				cp.HugepageLimits = r.GetHugepageLimits()
			}
			if len(r.GetUnified()) > 0 {
				cp.Unified = r.GetUnified()
			}
			rec.Resources = cp
		}
	})
	logging.FromContext(ctx).Info("container resources updated", "id", dockerspec.ShortID(c.ID))
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// applyExtraCgroups writes, once a container runs, the limits Docker's API
// cannot carry: hugetlb limits and cgroup v2 unified settings.
func (s *Service) applyExtraCgroups(c *store.Container) error {
	if c == nil || c.Resources == nil || c.Pid == 0 {
		return nil
	}
	for _, h := range c.Resources.GetHugepageLimits() {
		if err := cgroups.SetHugetlb(c.Pid, h.GetPageSize(), h.GetLimit()); err != nil {
			return fmt.Errorf("config.linux.resources.hugepage_limits: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
	}
	if len(c.Resources.GetUnified()) > 0 {
		if err := cgroups.SetUnified(c.Pid, c.Resources.GetUnified()); err != nil {
			return fmt.Errorf("config.linux.resources.unified: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}
