package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
)

// PortForward returns the URL on the streaming server where a client
// forwards, once, to ports on a ready pod's loopback; Berth dials them from
// inside the pod's network namespace.
func (s *Service) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	for i, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, errdefs.InvalidArgument(fmt.Sprintf("port[%d]", i), "%d is out of range 1-65535", p)
		}
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", dockerspec.ShortID(sb.ID), errdefs.ErrFailedPrecondition)
	}
	return s.stream.urls.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: req.GetPort()})
}
