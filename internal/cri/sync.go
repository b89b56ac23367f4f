package cri

import (
	"context"
	"sync"

	"github.com/berth-cri/berth/internal/panics"
)

// detachedRuns runs one operation per key at a time and hands its result
// to every caller that asks for the same key meanwhile. Unlike
// internal/flight (used for pulls, which stop when nobody waits), the
// operation runs detached from the callers' contexts: a caller that gives
// up (kubelet's deadline) leaves it to finish, and its retry gets the
// result.
type detachedRuns struct {
	mu sync.Mutex // guards m
	m  map[string]*detachedRun
}

type detachedRun struct {
	done chan struct{}
	id   string
	err  error
}

func newDetachedRuns() *detachedRuns { return &detachedRuns{m: map[string]*detachedRun{}} }

// do starts fn for key unless it is already running, then waits for it or
// for ctx. fn's own context is not ctx: it is bounded by its caller. If fn
// panics, its callers get an error wrapping errdefs.ErrInternal and the
// key is free again; fn's deferred cleanup stack runs as the panic unwinds,
// so what it made is undone as after any failure.
func (f *detachedRuns) do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	f.mu.Lock()
	fl, running := f.m[key]
	if !running {
		fl = &detachedRun{done: make(chan struct{})}
		f.m[key] = fl
		panics.GoThen(ctx, panics.DetachedRun, func() (err error) {
			fl.id, err = fn()
			return err
		}, func(err error) {
			fl.err = err
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			close(fl.done)
		})
	}
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.id, fl.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// running reports whether an operation holds key now.
func (f *detachedRuns) running(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[key]
	return ok
}

// keyedMutex is a mutex per key (a sandbox or container id), created on
// demand and dropped when unused.
type keyedMutex struct {
	mu sync.Mutex // guards m
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{m: map[string]*keyLock{}} }

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	l, ok := k.m[key]
	if !ok {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return k.unlocker(key, l)
}

// tryLock locks key unless someone holds or waits for it; ok is false
// then.
func (k *keyedMutex) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, held := k.m[key]; held {
		return nil, false
	}
	l := &keyLock{refs: 1}
	l.mu.Lock()
	k.m[key] = l
	return k.unlocker(key, l), true
}

func (k *keyedMutex) unlocker(key string, l *keyLock) func() {
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
