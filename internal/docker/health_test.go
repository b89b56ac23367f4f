package docker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDaemon answers the calls Probe makes; slow makes pings hang.
type fakeDaemon struct {
	slow atomic.Bool
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", "1.41")
	switch filepath.Base(r.URL.Path) {
	case "_ping":
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

// TestProbeToleratesOneLatePing: an overloaded daemon that misses one ping
// stays up; a second consecutive miss, or a refused connection, takes it
// down.
func TestProbeToleratesOneLatePing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeDaemon{}
	srv := &http.Server{Handler: fake}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	c, err := New(Options{Endpoint: "unix://" + sock, RequestTimeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	_ = srv.Close()
	if h := c.Probe(ctx); h.Ready {
		t.Fatal("a stopped daemon was still taken as up")
	}
}
