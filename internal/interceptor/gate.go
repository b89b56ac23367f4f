package interceptor

import (
	"context"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Gate holds CRI calls that depend on Berth's recovered state until start-up
// recovery is done. Calls that answer from live state (Version, Status,
// RuntimeConfig, …) pass straight through.
type Gate struct {
	// MaxWait bounds how long a call waits before failing with Unavailable.
	MaxWait time.Duration
	// Reason, if set, explains to a refused caller why Berth is not ready.
	Reason func() string

	once  sync.Once
	ready chan struct{}
}

// NewGate returns a closed gate.
func NewGate(maxWait time.Duration, reason func() string) *Gate {
	return &Gate{MaxWait: maxWait, Reason: reason, ready: make(chan struct{})}
}

// Open lets every call through, now and from now on.
func (g *Gate) Open() { g.once.Do(func() { close(g.ready) }) }

// IsOpen reports whether Open was called.
func (g *Gate) IsOpen() bool {
	select {
	case <-g.ready:
		return true
	default:
		return false
	}
}

var ungated = map[string]bool{
	"Version": true, "Status": true, "RuntimeConfig": true, "UpdateRuntimeConfig": true,
	"ListMetricDescriptors": true,
	"ServerReflectionInfo":  true, "Check": true, "Watch": true,
}

// Wait returns nil once the gate is open (or at once for an ungated method),
// or Unavailable if it stays closed for MaxWait or until ctx ends.
func (g *Gate) Wait(ctx context.Context, fullMethod string) error {
	if g == nil || ungated[path.Base(fullMethod)] {
		return nil
	}
	select {
	case <-g.ready:
		return nil
	default:
	}
	t := time.NewTimer(g.MaxWait)
	defer t.Stop()
	select {
	case <-g.ready:
		return nil
	case <-ctx.Done():
	case <-t.C:
	}
	msg := "Berth is starting: its state is not yet recovered from Docker"
	if g.Reason != nil {
		if r := g.Reason(); r != "" {
			msg += " (" + r + ")"
		}
	}
	return status.Error(codes.Unavailable, msg)
}
