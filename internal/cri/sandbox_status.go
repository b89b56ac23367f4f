package cri

import (
	"context"
	"encoding/json"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/store"
)

// PodSandboxStatus answers from Berth's index, without a Docker call.
func (s *Service) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: dockerspec.PodSandboxStatus(sb)}
	if req.GetVerbose() {
		info := map[string]any{
			"pid":            sb.Pid,
			"image":          sb.Image,
			"netns":          sb.NetNS,
			"cgroupParent":   sb.CgroupParent,
			"runtimeHandler": sb.RuntimeHandler,
			"ips":            sb.IPs,
			"pauseContainer": map[string]any{"name": sb.Name, "running": sb.Running, "gone": sb.ContainerGone},
			"adopted":        sb.Adopted,
		}
		if check := s.checkNetwork(ctx, sb); check != "" {
			info["networkCheck"] = check
		}
		raw, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(raw)}
		// Evented PLEG reads container statuses with the pod's.
		resp.Timestamp = time.Now().UnixNano()
		for _, c := range s.store.ContainersOf(sb.ID) {
			resp.ContainersStatuses = append(resp.ContainersStatuses, s.containerStatus(c))
		}
	}
	return resp, nil
}

// checkNetwork runs CNI CHECK for a sandbox whose network Berth set up and
// reports "ok" or what the plugins found; "" when there is nothing to check.
func (s *Service) checkNetwork(ctx context.Context, sb *store.Sandbox) string {
	if !sb.Owned || !sb.NetworkReady || !s.network.UsesCNI() || sb.Namespaces.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return ""
	}
	cp, err := s.checkpoints.Load(sb.ID)
	if err != nil || cp.Network == nil || cp.Network.State != checkpoint.StateUp {
		return ""
	}
	if err := s.network.Check(ctx, sb.ID, fromCheckpointNetwork(cp.Network)); err != nil {
		return err.Error()
	}
	return "ok"
}
