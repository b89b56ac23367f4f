package cri

import (
	"context"
	"fmt"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
)

// daemonReady returns Docker's health, probing it now if the last probe
// found it away, or an error wrapping errdefs.ErrUnavailable with the
// reason: calls that need Docker fail fast instead of hanging.
func (s *Service) daemonReady(ctx context.Context) (docker.Health, error) {
	h := s.docker.Health()
	if !h.Ready {
		h = s.docker.Probe(ctx)
	}
	if !h.Ready {
		return h, fmt.Errorf("%w: %s", errdefs.ErrUnavailable, h.Reason)
	}
	return h, nil
}
