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
//
// NOTE: timestamp and containers_statuses come only with verbose, on
// purpose. kubelet asks without verbose; with the EventedPLEG gate on and a
// timestamp in the answer, kubelet 1.37 takes its pod's container statuses
// from containers_statuses but never fills the pod's active-sandbox
// statuses from them (kubernetes/kubernetes#133371), so a pod with init
// containers stays Pending for good (the kubelet suite's init-container
// check fails so in its EventedPLEG run). Without a timestamp kubelet logs
// "Runtime does not set pod status timestamp" and asks ContainerStatus per
// container, which Berth answers from the index too: one more call per
// container, and every pod starts (docs/cri-coverage.md).
func (s *Service) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	// Taken before the index is read: what follows is at least that new.
	now := time.Now().UnixNano()
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
		resp.Timestamp = now
		// Newest first: kubelet, which sorts the statuses it fetches
		// itself so, takes the first of a name as the latest.
		cs := s.store.ContainersOf(sb.ID)
		for i := len(cs) - 1; i >= 0; i-- {
			resp.ContainersStatuses = append(resp.ContainersStatuses, s.containerStatus(cs[i]))
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
