package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/panics"
)

// Config configures the streaming server.
type Config struct {
	// Addr is host:port to listen on (port 0: any free port).
	Addr string
	// IdleTimeout closes a stream with no traffic for this long; 0 never.
	IdleTimeout time.Duration
	// TLSCertFile and TLSKeyFile, if set, serve HTTPS.
	TLSCertFile, TLSKeyFile string
	Logger                  *slog.Logger
}

// Server serves exec, attach and port-forward on single-use URLs, for
// kubelet (which proxies clients to it) and crictl.
//
// k8s.io/cri-streaming does the serving: its request cache issues the
// tokens (single use, expiring after a minute, 404 otherwise) and it speaks
// SPDY (remotecommand v1-v4, portforward) and WebSocket (channel.k8s.io,
// base64 and v4). It lacks WebSocket v5.channel.k8s.io, the protocol
// current kubectl, crictl and client-go's WebSocket executor speak (v5 adds
// the CLOSE signal that ends stdin); Server serves that one itself, in
// front of cri-streaming, for exec and attach (see websocket.go).
type Server struct {
	inner   cristreaming.Server
	runtime *Runtime
	idle    time.Duration
	log     *slog.Logger

	listener net.Listener
	http     *http.Server
	baseURL  *url.URL

	tokens *pending

	mu     sync.Mutex // guards conns and closed
	conns  map[*trackedConn]struct{}
	closed bool
}

// NewServer listens on cfg.Addr and returns the server; Serve serves.
func NewServer(cfg Config, rt *Runtime) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var tlsConfig *tls.Config
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--streaming-tls-cert-file/--streaming-tls-key-file: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("--streaming-bind-addr: %w", err)
	}
	base := &url.URL{Scheme: "http", Host: urlHost(l.Addr().(*net.TCPAddr))}
	if tlsConfig != nil {
		base.Scheme = "https"
	}

	s := &Server{
		runtime: rt,
		idle:    cfg.IdleTimeout,
		log:     log.With("component", "streaming"),
		baseURL: base,
		tokens:  newPending(),
		conns:   map[*trackedConn]struct{}{},
	}
	inner, err := cristreaming.NewServer(cristreaming.Config{
		Addr:                            l.Addr().String(),
		BaseURL:                         base,
		StreamIdleTimeout:               cfg.IdleTimeout,
		StreamCreationTimeout:           cristreaming.DefaultConfig.StreamCreationTimeout,
		SupportedRemoteCommandProtocols: cristreaming.DefaultConfig.SupportedRemoteCommandProtocols,
		SupportedPortForwardProtocols:   cristreaming.DefaultConfig.SupportedPortForwardProtocols,
	}, rt)
	if err != nil {
		l.Close()
		return nil, err
	}
	s.inner = inner
	s.listener = &trackingListener{Listener: l, s: s}
	if tlsConfig != nil {
		s.listener = tls.NewListener(s.listener, tlsConfig)
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// urlHost is the host:port of the URLs: the listening address, with an
// unspecified IP (0.0.0.0, ::) replaced by loopback, which kubelet on the
// same node can always reach.
func urlHost(a *net.TCPAddr) string {
	ip := a.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// URL is the server's base URL, e.g. http://127.0.0.1:39213.
func (s *Server) URL() string { return s.baseURL.String() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	err := s.http.Serve(s.listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening and ends every open stream: their connections
// close, so exec'd processes still attached are killed as when a client
// goes away.
func (s *Server) Close() error {
	err := s.http.Close()
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

// GetExec returns a single-use URL for req.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.inner.GetExec(req)
	if err != nil {
		return nil, err
	}
	if err := s.tokens.put("exec", resp.GetUrl(), req); err != nil {
		return nil, err
	}
	return resp, nil
}

// GetAttach returns a single-use URL for req.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.inner.GetAttach(req)
	if err != nil {
		return nil, err
	}
	if err := s.tokens.put("attach", resp.GetUrl(), req); err != nil {
		return nil, err
	}
	return resp, nil
}

// GetPortForward returns a single-use URL for req.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return s.inner.GetPortForward(req)
}

// ServeHTTP routes a stream request. Exec and attach tokens are consumed
// here first (so a token works once, whichever protocol uses it); a
// WebSocket v5 client is served here, every other request by cri-streaming.
//
// A panic is logged and counted (internal/panics) rather than left to
// net/http, which logs it only at Berth's debug level (ErrorLog);
// http.ErrAbortHandler, the deliberate abort, goes on to net/http.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			_ = panics.Handle(logging.WithLogger(r.Context(), s.log), panics.Streaming, v)
		}
	}()
	kind, token := path.Split(strings.TrimSuffix(r.URL.Path, "/"))
	kind = strings.Trim(kind, "/")
	switch kind {
	case "exec", "attach":
		req, ok := s.tokens.take(kind, token)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) {
			s.serveWebSocketV5(w, r, req)
			return
		}
	}
	s.inner.ServeHTTP(w, r)
}

// trackingListener registers every accepted connection with the server.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &trackedConn{Conn: c, s: l.s, ctx: ctx, cancel: cancel}
	l.s.mu.Lock()
	closed := l.s.closed
	if !closed {
		l.s.conns[tc] = struct{}{}
	}
	l.s.mu.Unlock()
	if closed {
		c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

// trackedConn is a connection whose context ends when it is closed.
//
// NOTE: an upgraded (hijacked) connection is no longer watched by net/http,
// so a request's context would not end when its client goes away or
// cri-streaming closes the stream for idleness. Request contexts derive
// from this one instead (connContext), so the runtime sees the end of the
// connection and stops the work it did for it (an exec'd process is killed).
type trackedConn struct {
	net.Conn
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.cancel()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return err
}

// connContext makes a connection's requests' contexts end when it closes.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(tc.ctx, cancel)
	return ctx
}
