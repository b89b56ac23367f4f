package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// The streaming tests drive the URLs Berth returns with the client
// libraries kubelet and kubectl use: client-go's remotecommand (SPDY, and
// WebSocket v5 as current kubectl and crictl speak it) and portforward.

// protocol is a way of speaking to the streaming server.
type protocol struct {
	name string
	ws   bool
}

var protocols = []protocol{{"SPDY", false}, {"WebSocket", true}}

// executor returns a client-go executor for an exec or attach URL.
func executor(t *testing.T, rawURL string, p protocol, cfg *restclient.Config) remotecommand.Executor {
	t.Helper()
	if cfg == nil {
		cfg = &restclient.Config{}
	}
	var exe remotecommand.Executor
	var err error
	if p.ws {
		exe, err = remotecommand.NewWebSocketExecutor(cfg, "GET", rawURL)
	} else {
		var u *url.URL
		if u, err = url.Parse(rawURL); err == nil {
			exe, err = remotecommand.NewSPDYExecutor(cfg, "POST", u)
		}
	}
	if err != nil {
		t.Fatalf("executor for %s: %v", rawURL, err)
	}
	return exe
}

// execURL asks Berth for an exec URL.
func execURL(t *testing.T, b *framework.Berth, req *runtimeapi.ExecRequest) string {
	t.Helper()
	resp, err := b.RuntimeClient.Exec(context.Background(), req)
	if err != nil {
		t.Fatalf("Exec(%v): %v", req.GetCmd(), err)
	}
	return resp.GetUrl()
}

// attachURL asks Berth for an attach URL.
func attachURL(t *testing.T, b *framework.Berth, req *runtimeapi.AttachRequest) string {
	t.Helper()
	resp, err := b.RuntimeClient.Attach(context.Background(), req)
	if err != nil {
		t.Fatalf("Attach(%s): %v", req.GetContainerId(), err)
	}
	return resp.GetUrl()
}

// exitCode returns the exit code a stream reported, -1 for success, or
// fails the test on any other error.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit utilexec.ExitError
	if errors.As(err, &exit) && exit.Exited() {
		return exit.ExitStatus()
	}
	t.Fatalf("stream failed: %v", err)
	return -1
}

// syncBuffer is a buffer written by a stream and read by the test.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds s.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		if !strings.Contains(b.String(), s) {
			return fmt.Errorf("output has no %q yet: %q", s, tail(b.String(), 400))
		}
		return nil
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// sizeQueue hands client-go the terminal sizes a test pushes.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q
	if !ok {
		return nil
	}
	return &s
}

// awaitSize is shell that waits (a few seconds at most) until the
// terminal has the given "rows cols" size, then prints label=size.
func awaitSize(size, label string) string {
	return fmt.Sprintf(`for i in $(seq 100); do s=$(stty size); [ "$s" = %q ] && break; sleep 0.1; done; echo %s=$s`, size, label)
}

// interactiveShell drives a shell on a terminal (an exec'd one, or a
// container's own): it sets a size, checks the shell sees it, resizes,
// checks again, and exits with 7. It returns the stream's error.
func interactiveShell(t *testing.T, exe remotecommand.Executor) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdin, input := io.Pipe()
	defer input.Close()
	sizes := make(sizeQueue, 1)
	defer close(sizes)
	sizes <- remotecommand.TerminalSize{Width: 123, Height: 45}
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- exe.StreamWithContext(ctx, remotecommand.StreamOptions{
			Stdin: stdin, Stdout: out, Tty: true, TerminalSizeQueue: sizes,
		})
	}()
	fmt.Fprintln(input, awaitSize("45 123", "FIRST"))
	out.waitFor(t, "FIRST=45 123")
	sizes <- remotecommand.TerminalSize{Width: 100, Height: 50}
	fmt.Fprintln(input, awaitSize("50 100", "SECOND")+"; exit 7")
	select {
	case err := <-done:
		if !strings.Contains(out.String(), "SECOND=50 100") {
			t.Fatalf("the shell did not see the resize: %q", tail(out.String(), 400))
		}
		return err
	case <-ctx.Done():
		t.Fatalf("the shell did not exit: %q", tail(out.String(), 400))
		return nil
	}
}

// runningContainer starts a container running script in a new pod.
func runningContainer(t *testing.T, b *framework.Berth, name, script string) string {
	t.Helper()
	p := newPod(t, b, name)
	return p.run(t, containerConfig("main", script))
}

func TestStreamingTokens(t *testing.T) {
	id := runningContainer(t, berth, "stream-tokens", "exec sleep 3600")
	req := &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "once"}, Stdout: true}

	for _, first := range protocols {
		for _, second := range protocols {
			t.Run(first.name+" then "+second.name, func(t *testing.T) {
				u := execURL(t, berth, req)
				var out bytes.Buffer
				if err := executor(t, u, first, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil {
					t.Fatalf("first use: %v", err)
				}
				if out.String() != "once\n" {
					t.Fatalf("first use printed %q", out.String())
				}
				err := executor(t, u, second, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard})
				if err == nil {
					t.Fatal("a used token worked again")
				}
			})
		}
	}

	t.Run("reused and unknown tokens are 404", func(t *testing.T) {
		u := execURL(t, berth, req)
		if err := executor(t, u, protocols[0], nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		attach := attachURL(t, berth, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true})
		pf, err := berth.RuntimeClient.PortForward(context.Background(), &runtimeapi.PortForwardRequest{PodSandboxId: containerStatusSandbox(t, id)})
		if err != nil {
			t.Fatal(err)
		}
		pfURL, _ := url.Parse(pf.GetUrl())
		attachParsed, _ := url.Parse(attach)
		for _, tc := range []struct{ name, url string }{
			{"reused exec token", u},
			{"unknown exec token", "http://" + parsed.Host + "/exec/unknowntoken"},
			{"unknown attach token", "http://" + parsed.Host + "/attach/unknowntoken"},
			{"unknown port-forward token", "http://" + parsed.Host + "/portforward/unknowntoken"},
			{"attach token on the exec path", "http://" + parsed.Host + "/exec/" + filepath.Base(attachParsed.Path)},
			{"port-forward token on the attach path", "http://" + parsed.Host + "/attach/" + filepath.Base(pfURL.Path)},
		} {
			resp, err := http.Post(tc.url, "text/plain", nil)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", tc.name, resp.StatusCode)
			}
		}
	})
}

// containerStatusSandbox returns the sandbox of a container.
func containerStatusSandbox(t *testing.T, id string) string {
	t.Helper()
	resp, err := berth.RuntimeClient.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil || len(resp.GetContainers()) != 1 {
		t.Fatalf("ListContainers(%s): %v", id, err)
	}
	return resp.GetContainers()[0].GetPodSandboxId()
}

func TestStreamingTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM := writeSelfSignedCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(),
		"--streaming-tls-cert-file", filepath.Join(dir, "cert.pem"),
		"--streaming-tls-key-file", filepath.Join(dir, "key.pem"))})
	id := runningContainer(t, b, "stream-tls", "exec sleep 3600")
	cfg := &restclient.Config{TLSClientConfig: restclient.TLSClientConfig{CAData: caPEM}}

	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			u := execURL(t, b, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "secret"}, Stdout: true})
			if !strings.HasPrefix(u, "https://") {
				t.Fatalf("the URL is %q, want https", u)
			}
			var out bytes.Buffer
			if err := executor(t, u, p, cfg).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil {
				t.Fatal(err)
			}
			if out.String() != "secret\n" {
				t.Fatalf("printed %q", out.String())
			}
		})
	}
	t.Run("plain HTTP is refused", func(t *testing.T) {
		u := execURL(t, b, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "secret"}, Stdout: true})
		resp, err := http.Post("http://"+strings.TrimPrefix(u, "https://"), "text/plain", nil)
		if err != nil {
			return // refused outright
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		// Go's TLS server answers a plain request with this 400.
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS server") {
			t.Fatalf("plain HTTP got status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("an untrusted certificate is refused", func(t *testing.T) {
		u := execURL(t, b, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "secret"}, Stdout: true})
		if err := executor(t, u, protocols[0], nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Fatal("a client that does not trust the certificate connected")
		}
	})
}

// writeSelfSignedCert writes a self-signed certificate for 127.0.0.1 and
// its key, and returns the certificate's PEM.
func writeSelfSignedCert(t *testing.T, certPath, keyPath string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth-streaming-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

// TestStreamingIdleTimeout: a stream with no traffic is closed after the
// idle timeout, and the exec'd process with it.
func TestStreamingIdleTimeout(t *testing.T) {
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(),
		"--streaming-connection-idle-timeout", "2s")})
	id := runningContainer(t, b, "stream-idle", "exec sleep 3600")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			marker := "sleep 86" + fmt.Sprint(len(p.name)) + "01"
			u := execURL(t, b, &runtimeapi.ExecRequest{ContainerId: id, Cmd: strings.Fields(marker), Stdout: true})
			// The guard only stops a broken test: the command sleeps a day.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := executor(t, u, p, nil).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
			if ctx.Err() != nil {
				t.Fatalf("the idle stream was not closed: %v", err)
			}
			eventually(t, 30*time.Second, func() error {
				if ps := dockerExec(t, id, "ps"); strings.Contains(ps, marker) {
					return fmt.Errorf("%q still runs:\n%s", marker, ps)
				}
				return nil
			})
		})
	}
}
