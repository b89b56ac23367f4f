package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestConcurrentCallersShareOneCall(t *testing.T) {
	var g Group[string]
	var calls, onJoin atomic.Int32
	g.OnJoin = func(_ context.Context, key string) {
		if key == "k" {
			onJoin.Add(1)
		}
	}
	release := make(chan struct{})
	const n = 8
	var wg sync.WaitGroup
	results := make(chan string, n)
	joins := make(chan bool, n)
	started := make(chan struct{})
	var once sync.Once
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, joined, err := g.Do(context.Background(), "k", func(ctx context.Context) (string, error) {
				calls.Add(1)
				once.Do(func() { close(started) })
				<-release
				return "v", nil
			})
			if err != nil {
				t.Error(err)
			}
			results <- v
			joins <- joined
		}()
	}
	<-started
	// Wait until every caller has joined the call in flight.
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		c := g.calls["k"]
		return c != nil && c.waiters == n
	})
	close(release)
	wg.Wait()
	close(results)
	close(joins)
	if got := calls.Load(); got != 1 {
		t.Errorf("fn ran %d times, want once", got)
	}
	for v := range results {
		if v != "v" {
			t.Errorf("result %q", v)
		}
	}
	var joined int
	for j := range joins {
		if j {
			joined++
		}
	}
	if joined != n-1 || onJoin.Load() != n-1 {
		t.Errorf("%d callers joined (OnJoin called %d times), want %d", joined, onJoin.Load(), n-1)
	}
	if g.InFlight() != 0 {
		t.Errorf("call not forgotten")
	}
}

func TestCallIsCancelledOnlyWhenEveryCallerLeft(t *testing.T) {
	var g Group[int]
	fnCtx := make(chan context.Context, 1)
	fnDone := make(chan error, 1)
	fn := func(ctx context.Context) (int, error) {
		fnCtx <- ctx
		<-ctx.Done()
		fnDone <- ctx.Err()
		return 0, ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, _, err := g.Do(ctx1, "k", fn); errs <- err }()
	c := <-fnCtx
	go func() { _, _, err := g.Do(ctx2, "k", fn); errs <- err }()
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.calls["k"].waiters == 2
	})

	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller got %v, want its context's error", err)
	}
	select {
	case <-c.Done():
		t.Fatalf("the shared call was cancelled while a caller still waited")
	case <-time.After(50 * time.Millisecond):
	}

	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("second caller got %v", err)
	}
	select {
	case err := <-fnDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("fn saw %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the call was not cancelled after every caller left")
	}
	// A new caller starts a fresh call rather than joining the abandoned one.
	v, joined, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	if v != 7 || joined || err != nil {
		t.Errorf("after abandonment: %v, %v, %v", v, joined, err)
	}
}

func TestCallKeepsCallerValuesAndDistinctKeysRunApart(t *testing.T) {
	type key struct{}
	var g Group[string]
	ctx := context.WithValue(context.Background(), key{}, "logger")
	v, _, err := g.Do(ctx, "a", func(ctx context.Context) (string, error) {
		return ctx.Value(key{}).(string), nil
	})
	if v != "logger" || err != nil {
		t.Errorf("value not passed: %q %v", v, err)
	}
	want := errors.New("boom")
	if _, _, err := g.Do(ctx, "b", func(context.Context) (string, error) { return "", want }); err != want {
		t.Errorf("error = %v, want %v", err, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never became true")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAPanicReachesEveryWaiterAndTheGroupGoesOn(t *testing.T) {
	var g Group[string]
	release := make(chan struct{})
	const n = 4
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, _, err := g.Do(context.Background(), "k", func(context.Context) (string, error) {
				<-release
				panic("boom")
			})
			errs <- err
		}()
	}
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		c := g.calls["k"]
		return c != nil && c.waiters == n
	})
	close(release)
	for i := 0; i < n; i++ {
		if err := <-errs; !errors.Is(err, errdefs.ErrInternal) {
			t.Errorf("waiter %d: %v, want an internal error", i, err)
		}
	}
	if g.InFlight() != 0 {
		t.Errorf("%d calls still in flight", g.InFlight())
	}
	v, _, err := g.Do(context.Background(), "k", func(context.Context) (string, error) { return "v", nil })
	if v != "v" || err != nil {
		t.Errorf("the next call: %q, %v", v, err)
	}
}
