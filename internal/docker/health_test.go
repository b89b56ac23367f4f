package docker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/panics"
)

// fakeDaemon answers the calls Probe makes; slow makes pings hang.
type fakeDaemon struct {
	slow  atomic.Bool
	pings atomic.Int32
	srv   *http.Server
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", "1.41")
	switch filepath.Base(r.URL.Path) {
	case "_ping":
		f.pings.Add(1)
		if f.slow.Load() {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "OK")
	case "version":
		_, _ = io.WriteString(w, `{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}`)
	case "info":
		_, _ = io.WriteString(w, `{"CgroupDriver":"cgroupfs","CgroupVersion":"1","Driver":"overlay2"}`)
	default:
		http.NotFound(w, r)
	}
}

func startFakeDaemon(t *testing.T) (*fakeDaemon, *Client) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeDaemon{}
	fake.srv = &http.Server{Handler: fake}
	go func() { _ = fake.srv.Serve(l) }()
	t.Cleanup(func() { _ = fake.srv.Close() })
	c, err := New(Options{Endpoint: "unix://" + sock, RequestTimeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return fake, c
}

// TestConcurrentProbesShareOnePing: callers that probe while a probe is in
// flight share it. Queued one after another, each caller's time limit ran
// out while it waited, and the second "late ping" took a merely slow Docker
// down for every call.
func TestConcurrentProbesShareOnePing(t *testing.T) {
	fake, c := startFakeDaemon(t)
	if h := c.Probe(context.Background()); !h.Ready {
		t.Fatalf("first probe: %+v", h)
	}
	fake.slow.Store(true)
	fake.pings.Store(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h := c.Probe(context.Background()); !h.Ready {
				t.Errorf("a probe sharing one late ping took Docker down: %s", h.Reason)
			}
		}()
	}
	wg.Wait()
	if n := fake.pings.Load(); n > 2 {
		t.Errorf("8 concurrent probes sent %d pings", n)
	}
}

// TestAbandonedProbeIsNoVerdict: a caller that gives up (kubelet's Status
// call timing out) gets the last known health at once, and its giving up
// does not count as Docker failing to answer.
func TestAbandonedProbeIsNoVerdict(t *testing.T) {
	fake, c := startFakeDaemon(t)
	if h := c.Probe(context.Background()); !h.Ready {
		t.Fatalf("first probe: %+v", h)
	}
	fake.slow.Store(true)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		h := c.Probe(ctx)
		cancel()
		if !h.Ready {
			t.Fatalf("an abandoned probe took Docker down: %s", h.Reason)
		}
	}
	// The probes kept running on their own; Docker answering again ends
	// the count of late pings.
	fake.slow.Store(false)
	if h := c.Probe(context.Background()); !h.Ready {
		t.Fatalf("after Docker answered again: %s", h.Reason)
	}
}

// TestProbeToleratesOneLatePing: an overloaded daemon that misses one ping
// stays up; a second consecutive miss, or a refused connection, takes it
// down.
func TestProbeToleratesOneLatePing(t *testing.T) {
	fake, c := startFakeDaemon(t)
	ctx := context.Background()
	if h := c.Probe(ctx); !h.Ready {
		t.Fatalf("first probe: %+v", h)
	}

	fake.slow.Store(true)
	if h := c.Probe(ctx); !h.Ready {
		t.Fatalf("one late ping took Docker down: %s", h.Reason)
	}
	if h := c.Probe(ctx); h.Ready {
		t.Fatal("two late pings in a row left Docker up")
	}

	// Back up; one late ping is tolerated again, since the count restarts.
	fake.slow.Store(false)
	if h := c.Probe(ctx); !h.Ready {
		t.Fatalf("after recovery: %s", h.Reason)
	}
	fake.slow.Store(true)
	if h := c.Probe(ctx); !h.Ready {
		t.Fatalf("a late ping after recovery took Docker down: %s", h.Reason)
	}
	fake.slow.Store(false)
	if h := c.Probe(ctx); !h.Ready {
		t.Fatalf("a timely ping: %s", h.Reason)
	}

	// A refused connection takes it down at once.
	_ = fake.srv.Close()
	if h := c.Probe(ctx); h.Ready {
		t.Fatal("a stopped daemon was still taken as up")
	}
}

// TestAProbeThatPanicsIsNoVerdict: a panic in a probe's goroutine reaches
// its callers as the last known health, and the next probe runs.
func TestAProbeThatPanicsIsNoVerdict(t *testing.T) {
	fake, c := startFakeDaemon(t)
	if h := c.Probe(context.Background()); !h.Ready {
		t.Fatalf("first probe: %+v", h)
	}
	var once sync.Once
	defer panics.SetHook(func(where string) {
		if where == panics.Docker {
			once.Do(func() { panic("boom") })
		}
	})()
	before := fake.pings.Load()
	if h := c.Probe(context.Background()); !h.Ready {
		t.Fatalf("the probe that panicked took Docker down: %s", h.Reason)
	}
	if fake.pings.Load() != before {
		t.Fatal("the injected panic came after the ping")
	}
	if h := c.Probe(context.Background()); !h.Ready || fake.pings.Load() == before {
		t.Fatalf("the next probe: %+v, pings %d", h, fake.pings.Load())
	}
}
