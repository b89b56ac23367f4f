package cri

import (
	"context"
	"net"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// RuntimeConfig reports the cgroup driver Docker uses, so kubelet can match
// it instead of being configured by hand.
func (s *Service) RuntimeConfig(ctx context.Context, _ *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	h, err := s.daemonReady(ctx)
	if err != nil {
		return nil, err
	}
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if h.Daemon.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver},
	}, nil
}

// UpdateRuntimeConfig records the pod CIDR kubelet hands down. As
// dockershim and cri-dockerd did, it reaches the CNI plugins that declare
// the ipRanges capability (host-local then allocates from it) for pods set
// up from now on; plugins with ranges of their own ignore it. It is also
// reported in Status's verbose info.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	for _, c := range strings.Split(cidr, ",") {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
			return nil, errdefs.InvalidArgument("runtime_config.network_config.pod_cidr", "%q is not a CIDR", c)
		}
	}
	if s.network.SetPodCIDR(cidr) {
		s.log.Info("pod CIDR set", "podCIDR", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
