package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// forward starts client-go's port forwarder (as kubectl port-forward does)
// on a PortForward URL of the pod, for the given pod ports, and returns the
// local ports in the same order. It stops when the test ends.
func forward(t *testing.T, sandboxID string, ports ...int) []uint16 {
	t.Helper()
	resp, err := berth.RuntimeClient.PortForward(context.Background(), &runtimeapi.PortForwardRequest{PodSandboxId: sandboxID})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&restclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	specs := make([]string, len(ports))
	for i, p := range ports {
		specs[i] = fmt.Sprintf("0:%d", p)
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, specs, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port forwarding ended: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("port forwarding did not become ready")
	}
	fwd, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	local := make([]uint16, len(fwd))
	for i, f := range fwd {
		local[i] = f.Local
	}
	return local
}

func TestPortForward(t *testing.T) {
	p := newPod(t, berth, "port-forward")
	p.run(t, containerConfig("web", "exec httpd -f -p 127.0.0.1:8080 -h /var/www"))
	// Wait until httpd listens (it binds the pod's loopback only: reachable
	// through port-forward, not from outside the pod).
	eventually(t, time.Minute, func() error {
		out, err := inPod(t, p.id, "wget -q -O - http://127.0.0.1:8080/index.html")
		if err != nil || !strings.Contains(out, "hello from berth-test") {
			return fmt.Errorf("httpd not up: %v: %s", err, out)
		}
		return nil
	})
	ports := forward(t, p.id, 8080)
	web := fmt.Sprintf("http://127.0.0.1:%d/index.html", ports[0])

	t.Run("20 concurrent requests", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
		errs := make(chan error, 20)
		parallel(20, func(i int) {
			resp, err := client.Get(web)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != "hello from berth-test\n" {
				errs <- fmt.Errorf("request %d: status %d, body %q, %v", i, resp.StatusCode, body, err)
			}
		})
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("the server closing closes the stream", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		// HTTP/1.0 without keep-alive: httpd answers and closes.
		if _, err := io.WriteString(conn, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("reading until the server closed: %v (read %q)", err, got)
		}
		if !strings.Contains(string(got), "hello from berth-test") {
			t.Fatalf("read %q", got)
		}
	})

	t.Run("a closed port", func(t *testing.T) {
		// Nothing listens on port 9 in the pod: the local connection ends
		// without data (and client-go ends that forwarding session, as
		// kubectl port-forward exits); other sessions go on.
		closed := forward(t, p.id, 9)
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", closed[0]))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		got, _ := io.ReadAll(conn)
		conn.Close()
		if len(got) != 0 {
			t.Fatalf("read %q from a closed port", got)
		}
		resp, err := http.Get(web)
		if err != nil {
			t.Fatalf("another session broke after the failed connection: %v", err)
		}
		resp.Body.Close()
	})

	t.Run("requests Berth refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *runtimeapi.PortForwardRequest
			code codes.Code
		}{
			{"no sandbox", &runtimeapi.PortForwardRequest{}, codes.InvalidArgument},
			{"unknown sandbox", &runtimeapi.PortForwardRequest{PodSandboxId: "nosuchsandbox"}, codes.NotFound},
			{"port out of range", &runtimeapi.PortForwardRequest{PodSandboxId: p.id, Port: []int32{70000}}, codes.InvalidArgument},
		} {
			if _, err := berth.RuntimeClient.PortForward(context.Background(), tc.req); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	})
}
