package cri

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/version"
)

// Status reports RuntimeReady from a live ping of Docker and NetworkReady
// from the CNI configuration, with the runtime handlers Docker has.
func (s *Service) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	h := s.docker.Probe(ctx)
	runtimeCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: h.Ready}
	if !h.Ready {
		runtimeCond.Reason = "DockerUnavailable"
		runtimeCond.Message = h.Reason
	}
	netReady, netReason := s.network.Ready()
	networkCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: netReady}
	if !netReady {
		networkCond.Reason = "NetworkPluginNotReady"
		networkCond.Message = netReason
	}

	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, networkCond}},
		RuntimeHandlers: runtimeHandlers(h.Daemon),
		Features:        runtimeFeatures(h.Daemon),
	}
	if req.GetVerbose() {
		resp.Info = s.verboseInfo(h)
	}
	return resp, nil
}

// runtimeHandlers lists the default handler ("") and one per runtime Docker
// is configured with; RuntimeHandler in a pod's request selects one.
func runtimeHandlers(d docker.DaemonInfo) []*runtimeapi.RuntimeHandler {
	handlers := []*runtimeapi.RuntimeHandler{{Name: "", Features: handlerFeatures(d, "")}}
	for _, name := range d.Runtimes {
		handlers = append(handlers, &runtimeapi.RuntimeHandler{Name: name, Features: handlerFeatures(d, name)})
	}
	return handlers
}

// handlerFeatures says what a handler supports. A feature is true only
// when Berth really implements it on the connected daemon: kubelet must
// never assume a feature that would be silently dropped.
//
// NOTE: user_namespaces means what kubelet implements: a user namespace
// per pod with the ID mappings kubelet picks, and id-mapped volumes.
// Berth's OCI runtime wrapper (runtime berth-userns) gives that to the
// pods of the default handler (and of the wrapper's own name), when
// Docker reports the wrapper with a kernel and runc that can
// (DaemonInfo.UserNamespaces). A daemon with userns-remap cannot: it has
// one mapping for every container.
func handlerFeatures(d docker.DaemonInfo, handler string) *runtimeapi.RuntimeHandlerFeatures {
	return &runtimeapi.RuntimeHandlerFeatures{
		RecursiveReadOnlyMounts: d.RecursiveReadOnly(handler) == nil,
		UserNamespaces:          (handler == "" || handler == idmap.RuntimeName) && d.UserNamespaces() == nil,
	}
}

// runtimeFeatures: SupplementalGroupsPolicy (Merge and Strict) and the
// container's user in ContainerStatus work on every Docker; the others are
// false because Docker cannot run a host-network container in a user
// namespace or pass noexec/nodev/nosuid to a bind mount.
func runtimeFeatures(docker.DaemonInfo) *runtimeapi.RuntimeFeatures {
	return &runtimeapi.RuntimeFeatures{
		SupplementalGroupsPolicy:  true,
		UserNamespacesHostNetwork: false,
		MountOptions:              false,
	}
}

func (s *Service) verboseInfo(h docker.Health) map[string]string {
	info := map[string]string{"berthVersion": version.String()}
	if b, err := json.Marshal(s.cfg); err == nil {
		info["config"] = string(b)
	}
	if b, err := json.Marshal(h.Daemon); err == nil {
		info["docker"] = string(b)
	}
	if b, err := json.Marshal(map[string]any{"clamp": s.host.OOM.Clamp, "lowest": s.host.OOM.Min}); err == nil {
		info["oomScoreAdj"] = string(b)
	}
	if b, err := json.Marshal(s.pause.State()); err == nil {
		info["sandboxImage"] = string(b)
	}
	info["podCIDR"] = s.network.PodCIDR()
	return info
}
