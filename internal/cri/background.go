package cri

import (
	"context"

	"github.com/berth-cri/berth/internal/panics"
)

// Start runs the service's background work until ctx ends and returns at
// once: the container-event hub, subscribed to the index now so that it
// knows every object Recover adds. Call it before Recover.
func (s *Service) Start(ctx context.Context) {
	s.events.hub.attach()
	panics.Go(ctx, panics.EventHub, func() { s.events.hub.run(ctx) })
}
