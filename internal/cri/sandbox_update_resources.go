package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// UpdatePodSandboxResources is kubelet telling the runtime about a pod's
// new resources (in-place resize). The pod-level cgroup is kubelet's: it
// sizes it itself before and after this call, and Docker has no pod-level
// object to apply it to; the containers' own limits come through
// UpdateContainerResources. So Berth checks the pod exists and succeeds.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	logging.FromContext(ctx).Debug("pod resources updated; the pod cgroup is kubelet's to size",
		"sandbox", dockerspec.ShortID(sb.ID), "resources", req.GetResources().String())
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
