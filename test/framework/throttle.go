package framework

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ThrottleProxy is an HTTP proxy on loopback in front of a registry that
// can slow down, hold back or stall the blob downloads passing through it
// (manifests and everything else pass untouched), to test how pulls behave
// on a slow or stuck registry. Pull through it by naming its Addr as the
// registry: <Addr>/repo:tag.
type ThrottleProxy struct {
	Addr string

	server *http.Server

	mu         sync.Mutex    // guards rate, stallAfter and gate
	rate       int           // bytes per second; 0: unlimited
	stallAfter int64         // stop each blob after this many bytes; <0: never
	gate       chan struct{} // blobs wait until it is closed; nil: open

	blobBytes atomic.Int64 // blob bytes sent to clients
	blobsSeen atomic.Int64 // blob responses started
	stalls    atomic.Int64 // blob responses that stalled
	abandoned atomic.Int64 // stalled or held responses whose client went away
}

// StartThrottleProxy proxies to the registry at target (host:port); it is
// stopped when tb ends. It starts out passing everything at full speed.
func StartThrottleProxy(tb testing.TB, target string) *ThrottleProxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &ThrottleProxy{Addr: l.Addr().String(), stallAfter: -1}
	u := &url.URL{Scheme: "http", Host: target}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			// The registry builds upload URLs from Host; keep the
			// proxy's so clients come back through it.
			r.Out.Host = r.In.Host
		},
		FlushInterval:  -1,
		ModifyResponse: p.modify,
	}
	p.server = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.server.Serve(l) }()
	tb.Cleanup(func() {
		p.Release()
		_ = p.server.Close()
	})
	return p
}

// SetRate limits blob downloads to bytesPerSecond (0: unlimited).
func (p *ThrottleProxy) SetRate(bytesPerSecond int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = bytesPerSecond
}

// StallAfter makes every blob download stop after n bytes and hang until
// the client goes away; a negative n turns stalling off.
func (p *ThrottleProxy) StallAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stallAfter = n
}

// Hold makes blob downloads wait, without sending a byte, until Release.
func (p *ThrottleProxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

// Release lets held blob downloads proceed.
func (p *ThrottleProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// BlobBytes is how many blob bytes clients have received.
func (p *ThrottleProxy) BlobBytes() int64 { return p.blobBytes.Load() }

// BlobRequests is how many blob downloads have started.
func (p *ThrottleProxy) BlobRequests() int64 { return p.blobsSeen.Load() }

// Stalls is how many blob downloads have stalled.
func (p *ThrottleProxy) Stalls() int64 { return p.stalls.Load() }

// Abandoned is how many stalled or held downloads the client gave up on
// (closed the connection): the sign that a pull was really cancelled.
func (p *ThrottleProxy) Abandoned() int64 { return p.abandoned.Load() }

func (p *ThrottleProxy) modify(resp *http.Response) error {
	if resp.Request.Method != http.MethodGet || !strings.Contains(resp.Request.URL.Path, "/blobs/") || resp.StatusCode != http.StatusOK {
		return nil
	}
	p.blobsSeen.Add(1)
	p.mu.Lock()
	b := &throttledBody{p: p, body: resp.Body, ctx: resp.Request.Context(), rate: p.rate, stallAfter: p.stallAfter, gate: p.gate}
	p.mu.Unlock()
	resp.Body = b
	return nil
}

type throttledBody struct {
	p          *ThrottleProxy
	body       io.ReadCloser
	ctx        context.Context
	rate       int
	stallAfter int64
	gate       chan struct{}
	sent       int64
}

func (b *throttledBody) Read(buf []byte) (int, error) {
	if b.gate != nil {
		select {
		case <-b.gate:
			b.gate = nil
		case <-b.ctx.Done():
			b.p.abandoned.Add(1)
			return 0, b.ctx.Err()
		}
	}
	if b.stallAfter >= 0 && b.sent >= b.stallAfter {
		b.p.stalls.Add(1)
		<-b.ctx.Done()
		b.p.abandoned.Add(1)
		return 0, b.ctx.Err()
	}
	limit := len(buf)
	if b.rate > 0 {
		// Chunks of a tenth of a second's worth, each followed by the
		// pause that keeps the average at the rate.
		limit = min(limit, max(b.rate/10, 1))
	}
	if b.stallAfter >= 0 {
		limit = min(limit, int(b.stallAfter-b.sent))
	}
	n, err := b.body.Read(buf[:limit])
	b.sent += int64(n)
	b.p.blobBytes.Add(int64(n))
	if b.rate > 0 && n > 0 {
		select {
		case <-time.After(time.Duration(n) * time.Second / time.Duration(b.rate)):
		case <-b.ctx.Done():
			return n, b.ctx.Err()
		}
	}
	return n, err
}

func (b *throttledBody) Close() error { return b.body.Close() }
