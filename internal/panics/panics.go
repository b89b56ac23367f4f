// Package panics keeps a panic in one of Berth's goroutines from ending the
// process. Every goroutine Berth starts is started here (Go, GoThen), and
// work a caller waits for runs through Call; a panic there is logged with
// its stack, counted in berth_panics_total{where}, and handed to whoever
// waits as an error wrapping errdefs.ErrInternal, which the gRPC
// interceptor answers with codes.Internal.
//
// The gRPC interceptor covers only the goroutine serving a call; the work
// that outlives it (RunPodSandbox's and CreateContainer's detached runs,
// shared pulls and removals, samplers, the event hub) runs in goroutines of
// its own, where an unrecovered panic would take the whole node's runtime
// down with it.
package panics

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/metrics"
)

// The kinds of goroutine, the values of berth_panics_total's "where" label
// (docs/reliability.md lists them).
const (
	// RPC is a CRI call's own goroutine (the gRPC interceptor).
	RPC = "rpc"
	// DetachedRun is RunPodSandbox's and CreateContainer's work, which
	// finishes after a caller gives up (internal/cri/sync.go).
	DetachedRun = "detached_run"
	// Flight is a pull or an image removal shared by its callers
	// (internal/flight).
	Flight = "flight"
	// StatsWorker is one of the workers of a stats or metrics call.
	StatsWorker = "stats_worker"
	// StatsSampler is the cgroup CPU and PSI sampler's tick.
	StatsSampler = "stats_sampler"
	// LayerSampler is a measure of the containers' writable layers.
	LayerSampler = "layer_sampler"
	// EventHub is the hub turning index changes into container events.
	EventHub = "event_hub"
	// EventWatch is the handling of one Docker event.
	EventWatch = "event_watch"
	// Recovery is start-up recovery and the inspects it fans out.
	Recovery = "recovery"
	// Docker is the Docker health loop, its probes and their listeners.
	Docker = "docker"
	// ImageLookup is a lookup of an image's configured user.
	ImageLookup = "image_lookup"
	// Logs is the forwarding of containers' output to kubelet's files.
	Logs = "logs"
	// Streaming is exec, attach and port-forward (their copies and
	// their HTTP handlers).
	Streaming = "streaming"
	// Netns is a dial from inside a pod's network namespace.
	Netns = "netns"
	// Server is the serving loops and shutdown of internal/app.
	Server = "server"
	// RuntimeCgroups is the loop that keeps Docker's daemons in
	// --runtime-cgroups (internal/app/runtime_cgroups.go).
	RuntimeCgroups = "runtime_cgroups"
)

// Error is a recovered panic. It wraps errdefs.ErrInternal.
type Error struct {
	Where string
	Value any
	Stack []byte
}

func (e *Error) Error() string {
	return fmt.Sprintf("internal error: panic in %s: %v (its stack is in Berth's log)", e.Where, e.Value)
}

func (e *Error) Unwrap() error { return errdefs.ErrInternal }

// Recover, deferred, recovers a panic of the goroutine it is deferred in:
//
//	defer panics.Recover(ctx, panics.Flight, &err)
//
// logs it with its stack (with ctx's logger), counts it, and sets *errp to
// the *Error unless errp is nil. It must be deferred itself, not called by
// a deferred function: recover works only there.
func Recover(ctx context.Context, where string, errp *error) {
	if r := recover(); r != nil {
		err := Handle(ctx, where, r)
		if errp != nil {
			*errp = err
		}
	}
}

// Handle turns a value recover returned into an *Error, logging and
// counting it, for code that recovers by itself (the interceptor). A value
// that already is an *Error (a panic recovered in a worker and raised again
// in the goroutine waiting for it) was logged and counted where it happened
// and is returned as it is.
func Handle(ctx context.Context, where string, r any) error {
	if e, ok := r.(*Error); ok {
		return e
	}
	e := &Error{Where: where, Value: r, Stack: debug.Stack()}
	logging.FromContext(ctx).Error("recovered from a panic; Berth goes on serving",
		"where", where, "panic", fmt.Sprint(r), "stack", string(e.Stack))
	metrics.Panics.WithLabelValues(where).Inc()
	return e
}

// Call runs fn in the calling goroutine and returns its error, or an *Error
// if it panicked.
func Call(ctx context.Context, where string, fn func() error) (err error) {
	defer Recover(ctx, where, &err)
	inject(where)
	return fn()
}

// Go runs fn in a new goroutine; a panic in it is logged and counted, and
// ends only that goroutine. It is for loops (whose every round runs under
// Call) and for work nobody waits for.
func Go(ctx context.Context, where string, fn func()) {
	go func() {
		defer Recover(ctx, where, nil)
		fn()
	}()
}

// GoThen runs fn in a new goroutine and then, in that goroutine, done with
// fn's error, or with an *Error if fn panicked: whoever waits for fn hears
// of its end either way. done may be nil.
func GoThen(ctx context.Context, where string, fn func() error, done func(error)) {
	go func() {
		defer Recover(ctx, where, nil) // a panic in done
		err := Call(ctx, where, fn)
		if done != nil {
			done(err)
		}
	}()
}

// hook, when set, is called by Call (and so by GoThen) with its where
// before fn: tests inject panics through it.
var hook atomic.Pointer[func(where string)]

// SetHook makes Call call fn with its where before running its work: a
// test injects a panic by panicking in fn. nil removes the hook. It
// returns a function that restores the previous hook. Nothing outside
// tests and the berth_testhooks build (testhook.go) sets it.
func SetHook(fn func(where string)) (restore func()) {
	var p *func(string)
	if fn != nil {
		p = &fn
	}
	old := hook.Swap(p)
	return func() { hook.Store(old) }
}

func inject(where string) {
	if h := hook.Load(); h != nil {
		(*h)(where)
	}
}
