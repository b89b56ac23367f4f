package cri

import "context"

// Start runs the service's background work until ctx ends and returns at
// once: the container-event hub, subscribed to the index now so that it
// knows every object Recover adds, and the stats sampler. Call it before
// Recover.
func (s *Service) Start(ctx context.Context) {
	s.store.Subscribe(s.events.changes)
	go s.events.run(ctx)
	go s.stats.sampler.Run(ctx)
}
