package cri

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/store"
)

// ContainerStatus answers from Berth's index, kept current by Docker's
// event stream.
func (s *Service) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: s.containerStatus(c)}
	if req.GetVerbose() {
		info := map[string]any{
			"pid":           c.Pid,
			"sandboxID":     c.SandboxID,
			"dockerName":    c.Name,
			"dockerLogPath": c.DockerLogPath,
			"privileged":    c.Privileged,
			"tty":           c.Tty,
			"stdin":         c.Stdin,
			"adopted":       c.Adopted,
		}
		raw, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(raw)}
	}
	return resp, nil
}

// containerStatus is the ContainerStatus form of a container record.
func (s *Service) containerStatus(c *store.Container) *runtimeapi.ContainerStatus {
	return dockerspec.ContainerStatusToCRI(c)
}
