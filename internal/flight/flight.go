// Package flight runs one call per key at a time and shares its result with
// every caller that asks for the same key meanwhile, like
// golang.org/x/sync/singleflight, with one difference that matters for image
// pulls: the shared call runs under its own context, which is cancelled only
// when every caller waiting for it has given up.
package flight

import (
	"context"
	"sync"

	"github.com/berth-cri/berth/internal/panics"
)

// Group holds the calls in flight. The zero Group is ready to use.
type Group[T any] struct {
	// OnJoin, if set, is called with a caller's context when it joins a
	// call in flight, before it starts waiting (e.g. to log that it did).
	OnJoin func(ctx context.Context, key string)

	mu    sync.Mutex // guards calls and every call's waiters
	calls map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{} // closed when fn has returned; val and err are then set
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do calls fn for key, unless a call for key is already in flight, in which
// case it waits for that call's result instead; joined reports which.
//
// fn runs under a context that keeps ctx's values but not its cancellation:
// it is cancelled when every caller waiting for it (the first included) has
// returned because its own ctx ended. Such a caller gets its ctx's error. A
// caller arriving after the call was abandoned starts a new one. If fn
// panics, every caller waiting gets an error wrapping errdefs.ErrInternal
// (internal/panics), and the next caller starts a new call.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (v T, joined bool, err error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*call[T]{}
	}
	c, joined := g.calls[key]
	if joined {
		c.waiters++
	} else {
		callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call[T]{done: make(chan struct{}), waiters: 1, cancel: cancel}
		g.calls[key] = c
		panics.GoThen(callCtx, panics.Flight, func() (err error) {
			c.val, err = fn(callCtx)
			return err
		}, func(err error) { g.finish(key, c, err) })
	}
	g.mu.Unlock()
	if joined && g.OnJoin != nil {
		g.OnJoin(ctx, key)
	}

	select {
	case <-c.done:
		return c.val, joined, c.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	c.waiters--
	if c.waiters == 0 {
		c.cancel()
		g.forget(key, c)
	}
	g.mu.Unlock()
	var zero T
	return zero, joined, ctx.Err()
}

// finish records the end of c's fn (err is a panics.Error if fn panicked:
// every waiter then gets it) and lets the waiters go.
func (g *Group[T]) finish(key string, c *call[T], err error) {
	c.cancel()
	g.mu.Lock()
	c.err = err
	g.forget(key, c)
	g.mu.Unlock()
	close(c.done)
}

// forget removes c from the group if it is still key's call. g.mu is held.
func (g *Group[T]) forget(key string, c *call[T]) {
	if g.calls[key] == c {
		delete(g.calls, key)
	}
}

// InFlight reports how many calls are running.
func (g *Group[T]) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}
