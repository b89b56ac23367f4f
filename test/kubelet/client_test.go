package kubelet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// kubeletClient speaks to kubelet's own HTTPS server, trusting the
// self-signed certificate kubelet generated in its cert dir.
type kubeletClient struct {
	base string
	cfg  *rest.Config
	http *http.Client
}

func newKubeletClient(port int, certFile, nodeName string) (*kubeletClient, error) {
	ca, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cfg := &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", port),
		// kubelet's self-signed certificate names the node.
		TLSClientConfig: rest.TLSClientConfig{CAData: ca, ServerName: nodeName},
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeletClient{base: cfg.Host, cfg: cfg, http: hc}, nil
}

// do sends a request and returns the body; a status other than 200 is an
// error carrying the body.
func (c *kubeletClient) do(ctx context.Context, method, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, &httpError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// httpError is a kubelet answer other than 200 OK.
type httpError struct {
	Status int
	Body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

func (c *kubeletClient) getJSON(ctx context.Context, path string, v any) error {
	body, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decoding: %w", path, err)
	}
	return nil
}

// Pods is kubelet's /pods: the pods it was told to run, with the statuses
// it computed (for static pods, kubelet fills in the status itself).
func (c *kubeletClient) Pods(ctx context.Context) ([]corev1.Pod, error) {
	var list corev1.PodList
	err := c.getJSON(ctx, "/pods", &list)
	return list.Items, err
}

// RunningPods is kubelet's /runningpods/: the pods its runtime cache holds,
// as the runtime reports them.
func (c *kubeletClient) RunningPods(ctx context.Context) ([]corev1.Pod, error) {
	var list corev1.PodList
	err := c.getJSON(ctx, "/runningpods/", &list)
	return list.Items, err
}

// Summary is kubelet's /stats/summary.
func (c *kubeletClient) Summary(ctx context.Context) (*statsapi.Summary, error) {
	var s statsapi.Summary
	err := c.getJSON(ctx, "/stats/summary", &s)
	return &s, err
}

// Metrics is kubelet's /metrics, in the Prometheus text format.
func (c *kubeletClient) Metrics(ctx context.Context) (string, error) {
	body, err := c.do(ctx, http.MethodGet, "/metrics")
	return string(body), err
}

// CadvisorMetrics is kubelet's /metrics/cadvisor, in Prometheus text.
func (c *kubeletClient) CadvisorMetrics(ctx context.Context) (string, error) {
	body, err := c.do(ctx, http.MethodGet, "/metrics/cadvisor")
	return string(body), err
}

// ContainerLogs is kubelet's /containerLogs with the given query.
func (c *kubeletClient) ContainerLogs(ctx context.Context, ns, pod, container string, q url.Values) (string, error) {
	path := fmt.Sprintf("/containerLogs/%s/%s/%s", ns, pod, container)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	body, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	return string(body), nil
}

// Run is kubelet's /run: a command run to completion through the runtime's
// ExecSync (kubelet splits cmd on spaces).
func (c *kubeletClient) Run(ctx context.Context, ns, pod, container, cmd string) (string, error) {
	path := fmt.Sprintf("/run/%s/%s/%s?cmd=%s", ns, pod, container, url.QueryEscape(cmd))
	body, err := c.do(ctx, http.MethodPost, path)
	return string(body), err
}

// streamURL is the URL of an exec or attach on kubelet.
func (c *kubeletClient) streamURL(kind, ns, pod, container string, cmd []string, stdin bool) *url.URL {
	u, _ := url.Parse(fmt.Sprintf("%s/%s/%s/%s/%s", c.base, kind, ns, pod, container))
	q := url.Values{}
	for _, arg := range cmd {
		q.Add(corev1.ExecCommandParam, arg)
	}
	if stdin {
		q.Set(corev1.ExecStdinParam, "1")
	}
	q.Set(corev1.ExecStdoutParam, "1")
	q.Set(corev1.ExecStderrParam, "1")
	u.RawQuery = q.Encode()
	return u
}

// Streaming protocols the suite exercises.
const (
	protoSPDY      = "spdy"      // client-go's SPDY executor
	protoWebSocket = "websocket" // client-go's WebSocket executor (v5 channel protocol; kubelet translates it to SPDY towards the runtime)
)

// execResult is what came back from a streamed command.
type execResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// Exec runs cmd through kubelet's /exec over proto, feeding stdin.
func (c *kubeletClient) Exec(ctx context.Context, proto, ns, pod, container string, cmd []string, stdin string) (execResult, error) {
	return c.stream(ctx, proto, c.streamURL("exec", ns, pod, container, cmd, true), strings.NewReader(stdin), nil)
}

func (c *kubeletClient) executor(proto string, u *url.URL) (remotecommand.Executor, error) {
	switch proto {
	case protoSPDY:
		return remotecommand.NewSPDYExecutor(c.cfg, http.MethodPost, u)
	case protoWebSocket:
		return remotecommand.NewWebSocketExecutor(c.cfg, http.MethodGet, u.String())
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

// stream runs an exec or attach session; until, when set, ends the session
// (by cancelling it) once stdout satisfies it.
func (c *kubeletClient) stream(ctx context.Context, proto string, u *url.URL, stdin io.Reader, until func(stdout string) bool) (execResult, error) {
	ex, err := c.executor(proto, u)
	if err != nil {
		return execResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	if until != nil {
		stdout.onWrite = func(s string) {
			if until(s) {
				cancel()
			}
		}
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Stderr: &stderr})
	res := execResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr utilexec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
		err = nil
	case err != nil && until != nil && until(res.Stdout):
		err = nil // we ended it
	}
	return res, err
}

// Attach attaches to a running container over proto, writes line to its
// stdin and returns what it printed until want appeared.
func (c *kubeletClient) Attach(ctx context.Context, proto, ns, pod, container, line, want string) (string, error) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, line) }()
	res, err := c.stream(ctx, proto, c.streamURL("attach", ns, pod, container, nil, true), pr,
		func(out string) bool { return strings.Contains(out, want) })
	return res.Stdout, err
}

// PortForward forwards a local port on 127.0.0.1 to port in the pod over
// proto and returns the local port and a function ending the forwarding.
func (c *kubeletClient) PortForward(ctx context.Context, proto, ns, pod string, port int) (int, func(), error) {
	u, _ := url.Parse(fmt.Sprintf("%s/portForward/%s/%s", c.base, ns, pod))
	var pf *portforward.PortForwarder
	stop := make(chan struct{})
	ready := make(chan struct{})
	var out, errOut bytes.Buffer
	switch proto {
	case protoSPDY:
		rt, upgrader, err := spdy.RoundTripperFor(c.cfg)
		if err != nil {
			return 0, nil, err
		}
		d := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
		if pf, err = portforward.NewOnAddresses(d, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, &out, &errOut); err != nil {
			return 0, nil, err
		}
	case protoWebSocket:
		d, err := portforward.NewSPDYOverWebsocketDialer(u, c.cfg)
		if err != nil {
			return 0, nil, err
		}
		if pf, err = portforward.NewOnAddresses(d, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, &out, &errOut); err != nil {
			return 0, nil, err
		}
	default:
		return 0, nil, fmt.Errorf("unknown protocol %q", proto)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	var once sync.Once
	closeFn := func() { once.Do(func() { close(stop) }) }
	select {
	case <-ready:
	case err := <-done:
		return 0, nil, fmt.Errorf("port forward ended before it was ready: %v (%s)", err, errOut.String())
	case <-ctx.Done():
		closeFn()
		return 0, nil, ctx.Err()
	case <-time.After(60 * time.Second):
		closeFn()
		return 0, nil, errors.New("port forward not ready within 60s")
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		closeFn()
		return 0, nil, fmt.Errorf("forwarded ports %v: %v", ports, err)
	}
	return int(ports[0].Local), closeFn, nil
}

// ExecWebSocketV4 runs cmd through kubelet's /exec with the older
// v4.channel.k8s.io WebSocket protocol, which kubelet does not translate
// but passes through to the runtime's streaming server: the path every
// kubelet before 1.36 takes for WebSocket clients. It writes stdin (the
// protocol cannot close stdin) and returns the output and the exit code
// from the error channel.
func (c *kubeletClient) ExecWebSocketV4(ctx context.Context, ns, pod, container string, cmd []string, stdin string) (execResult, error) {
	u := c.streamURL("exec", ns, pod, container, cmd, true)
	u.Scheme = "wss"
	tlsCfg, err := rest.TLSConfigFor(c.cfg)
	if err != nil {
		return execResult{}, err
	}
	d := websocket.Dialer{
		TLSClientConfig:  tlsCfg,
		Subprotocols:     []string{"v4.channel.k8s.io"},
		HandshakeTimeout: 30 * time.Second,
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return execResult{}, fmt.Errorf("websocket handshake: %v: HTTP %d %s", err, resp.StatusCode, body)
		}
		return execResult{}, fmt.Errorf("websocket handshake: %w", err)
	}
	defer conn.Close()
	if conn.Subprotocol() != "v4.channel.k8s.io" {
		return execResult{}, fmt.Errorf("negotiated subprotocol %q, want v4.channel.k8s.io", conn.Subprotocol())
	}
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	if err := conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, stdin...)); err != nil {
		return execResult{}, fmt.Errorf("writing stdin: %w", err)
	}
	var res execResult
	var stdout, stderr strings.Builder
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			res.Stdout, res.Stderr = stdout.String(), stderr.String()
			return res, fmt.Errorf("connection ended without a status: %w (stdout %q)", err, res.Stdout)
		}
		if len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case 1:
			stdout.Write(msg[1:])
		case 2:
			stderr.Write(msg[1:])
		case 3:
			res.Stdout, res.Stderr = stdout.String(), stderr.String()
			if len(msg) == 1 {
				continue // the channel's opening frame
			}
			code, err := exitCodeFromStatus(msg[1:])
			res.ExitCode = code
			return res, err
		}
	}
}

// exitCodeFromStatus reads the exit code from the Status object a
// streaming server writes on the error channel at the end of an exec.
func exitCodeFromStatus(b []byte) (int, error) {
	var st struct {
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("error channel %q: %v", b, err)
	}
	if st.Status == "Success" {
		return 0, nil
	}
	if st.Reason == "NonZeroExitCode" {
		for _, c := range st.Details.Causes {
			if c.Reason == "ExitCode" {
				return strconv.Atoi(c.Message)
			}
		}
	}
	return 0, fmt.Errorf("exec failed: %s", b)
}

// syncBuffer is a bytes.Buffer safe for the executor's goroutines, with a
// hook run after each write.
type syncBuffer struct {
	mu      sync.Mutex // guards buf
	buf     bytes.Buffer
	onWrite func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	s := b.buf.String()
	b.mu.Unlock()
	if b.onWrite != nil {
		b.onWrite(s)
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
