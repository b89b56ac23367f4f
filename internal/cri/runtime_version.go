package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/version"
)

// kubeletAPIVersion is the CRI version field runtimes have always returned.
const kubeletAPIVersion = "0.1.0"

// Version reports Docker as the runtime, with the daemon's version.
func (s *Service) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	h, err := s.daemonReady(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.VersionResponse{
		Version:           kubeletAPIVersion,
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    h.Daemon.Version,
		RuntimeApiVersion: "v1",
	}, nil
}
