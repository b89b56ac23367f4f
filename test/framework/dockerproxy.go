package framework

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerProxy sits between Berth and Docker on a unix socket of its own and
// records every Docker API request, so a test can check what Berth asked
// Docker (e.g. that concurrent identical pulls made one pull).
type DockerProxy struct {
	// Host is the proxy's endpoint, for berth's --docker-endpoint.
	Host string

	server *http.Server

	mu       sync.Mutex // guards requests
	requests []DockerRequest
}

// DockerRequest is one recorded Docker API request.
type DockerRequest struct {
	Method string
	// Path is without the /v1.xx prefix, e.g. /images/create.
	Path  string
	Query url.Values
}

// StartDockerProxy proxies to DockerHost(); it is stopped when tb ends.
func StartDockerProxy(tb testing.TB) *DockerProxy {
	tb.Helper()
	target, err := url.Parse(DockerHost())
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
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "docker"
			r.Out.Host = "docker"
			p.record(r.In)
		},
		Transport:     &http.Transport{DialContext: dial},
		FlushInterval: -1,
	}
	p.server = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.server.Serve(l) }()
	tb.Cleanup(func() { _ = p.server.Close() })
	return p
}

func (p *DockerProxy) record(r *http.Request) {
	path := r.URL.Path
	if strings.HasPrefix(path, "/v1.") {
		if i := strings.Index(path[1:], "/"); i >= 0 {
			path = path[i+1:]
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, DockerRequest{Method: r.Method, Path: path, Query: r.URL.Query()})
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
