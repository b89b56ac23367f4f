package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerProxy sits between Berth and Docker on a unix socket of its own. It
// records every Docker API request, so a test can check what Berth asked
// Docker (e.g. that concurrent identical pulls made one pull), and injects
// faults: chosen calls fail with an error of Docker's, or hang until the
// test releases them, while everything else reaches the real daemon.
type DockerProxy struct {
	// Host is the proxy's endpoint, for berth's --docker-endpoint.
	Host string

	server *http.Server
	rp     *httputil.ReverseProxy

	mu       sync.Mutex // guards requests and faults
	requests []DockerRequest
	faults   []*Fault
}

// DockerRequest is one recorded Docker API request.
type DockerRequest struct {
	Method string
	// Path is without the /v1.xx prefix, e.g. /images/create.
	Path  string
	Query url.Values
}

// Fault is a rule of the proxy: requests whose method is Method and whose
// path (without the API version prefix) matches Path, a path.Match pattern
// such as /containers/create or /containers/*/start, are not simply
// forwarded.
type Fault struct {
	Method string
	Path   string
	// Status, when set, answers matching requests with this HTTP status
	// and Message in Docker's error body instead of forwarding them.
	Status  int
	Message string
	// Hang holds matching requests until Release is called (then they are
	// answered with Status, or forwarded when Status is 0) or until the
	// client gives up (then nothing reaches Docker, unless Late).
	Hang bool
	// Late forwards a held request on Release even when its client gave up
	// meanwhile: Docker finishing a call its caller abandoned.
	Late bool
	// Times is how many requests the fault applies to; 0 is every one.
	Times int

	mu       sync.Mutex // guards hits and held
	hits     int
	held     int
	released chan struct{}
	once     sync.Once
}

// Release lets the requests a hanging fault holds (and later ones) go on.
func (f *Fault) Release() { f.once.Do(func() { close(f.released) }) }

// Hits is how many requests the fault has applied to.
func (f *Fault) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// Held is how many requests a hanging fault holds now.
func (f *Fault) Held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// WaitHeld waits until the fault holds at least n requests.
func (f *Fault) WaitHeld(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f.Held() >= n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// StartDockerProxy proxies to DockerHost(); it is stopped when tb ends.
func StartDockerProxy(tb testing.TB) *DockerProxy {
	tb.Helper()
	return StartDockerProxyTo(tb, DockerHost())
}

// StartDockerProxyTo proxies to the daemon at host (e.g. a private
// daemon's Host); it is stopped when tb ends.
func StartDockerProxyTo(tb testing.TB, host string) *DockerProxy {
	tb.Helper()
	target, err := url.Parse(host)
	if err != nil {
		tb.Fatal(err)
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		if target.Scheme == "unix" {
			return d.DialContext(ctx, "unix", target.Path)
		}
		return d.DialContext(ctx, "tcp", target.Host)
	}
	sock := filepath.Join(tb.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	p := &DockerProxy{Host: "unix://" + sock}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "docker"
			r.Out.Host = "docker"
		},
		Transport:     &http.Transport{DialContext: dial},
		FlushInterval: -1,
	}
	p.server = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.server.Serve(l) }()
	tb.Cleanup(func() {
		p.mu.Lock()
		for _, f := range p.faults {
			f.Release()
		}
		p.mu.Unlock()
		_ = p.server.Close()
	})
	return p
}

// Inject adds a fault and returns it (to Release, or to count its hits).
func (p *DockerProxy) Inject(f *Fault) *Fault {
	f.released = make(chan struct{})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
	return f
}

// Clear removes a fault; requests it holds are released.
func (p *DockerProxy) Clear(f *Fault) {
	f.Release()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, g := range p.faults {
		if g == f {
			p.faults = append(p.faults[:i], p.faults[i+1:]...)
			return
		}
	}
}

func (p *DockerProxy) serve(w http.ResponseWriter, r *http.Request) {
	reqPath := unversioned(r.URL.Path)
	p.mu.Lock()
	p.requests = append(p.requests, DockerRequest{Method: r.Method, Path: reqPath, Query: r.URL.Query()})
	var fault *Fault
	for _, f := range p.faults {
		if f.matches(r.Method, reqPath) {
			fault = f
			break
		}
	}
	p.mu.Unlock()
	if fault == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	if fault.Hang {
		// The server notices a client hanging up only once the request
		// body is read: read it now, and replay it when forwarding.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		fault.mu.Lock()
		fault.held++
		fault.mu.Unlock()
		select {
		case <-fault.released:
		case <-r.Context().Done():
			if fault.Late {
				<-fault.released
			}
		}
		fault.mu.Lock()
		fault.held--
		fault.mu.Unlock()
		if r.Context().Err() != nil {
			if fault.Late && fault.Status == 0 {
				// Docker gets it all the same; nobody reads the answer.
				late := r.Clone(context.Background())
				late.Body = io.NopCloser(bytes.NewReader(body))
				p.rp.ServeHTTP(discard{header: http.Header{}}, late)
			}
			return // the client gave up
		}
	}
	if fault.Status == 0 {
		p.rp.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(fault.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": fault.Message})
}

// discard is a ResponseWriter nobody reads.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// matches reports whether the fault applies to a request, and counts it.
func (f *Fault) matches(method, reqPath string) bool {
	if f.Method != "" && f.Method != method {
		return false
	}
	if ok, _ := path.Match(f.Path, reqPath); !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Times > 0 && f.hits >= f.Times {
		return false
	}
	f.hits++
	return true
}

// unversioned strips the /v1.xx prefix from a Docker API path.
func unversioned(p string) string {
	if strings.HasPrefix(p, "/v1.") {
		if i := strings.Index(p[1:], "/"); i >= 0 {
			return p[i+1:]
		}
	}
	return p
}

// Requests returns the recorded requests that match.
func (p *DockerProxy) Requests(match func(DockerRequest) bool) []DockerRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []DockerRequest
	for _, r := range p.requests {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}
