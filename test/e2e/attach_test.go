package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAttach(t *testing.T) {
	p := newPod(t, berth, "attach")
	ticker := p.run(t, containerConfig("ticker", "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.2; done"))

	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Run("output of a running container", func(t *testing.T) {
				u := attachURL(t, berth, &runtimeapi.AttachRequest{ContainerId: ticker, Stdout: true, Stderr: true})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				out, errOut := &syncBuffer{}, &syncBuffer{}
				done := make(chan error, 1)
				go func() {
					done <- executor(t, u, proto, nil).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: errOut})
				}()
				out.waitFor(t, "tick")
				errOut.waitFor(t, "tock")
				// Two new lines arrive: the stream is live, not a replay.
				first := strings.Count(out.String(), "tick")
				eventually(t, time.Minute, func() error {
					if strings.Count(out.String(), "tick") < first+2 {
						return errorf("no new output after %q", out.String())
					}
					return nil
				})
				if strings.Contains(out.String(), "tock") || strings.Contains(errOut.String(), "tick") {
					t.Fatalf("stdout and stderr are mixed: %q, %q", out.String(), errOut.String())
				}
				cancel()
				<-done
				if containerStatus(t, berth, ticker).State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Fatal("detaching stopped the container")
				}
			})

			t.Run("stdin with stdin_once", func(t *testing.T) {
				cfg := containerConfig("once-"+strings.ToLower(proto.name), "")
				cfg.Command, cfg.Args = []string{"sha256sum"}, nil
				cfg.Stdin, cfg.StdinOnce = true, true
				id := p.run(t, cfg)
				u := attachURL(t, berth, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true})
				out := &syncBuffer{}
				err := executor(t, u, proto, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{
					Stdin: strings.NewReader("hello\n"), Stdout: out,
				})
				if err != nil {
					t.Fatalf("attach: %v", err)
				}
				// sha256("hello\n")
				if !strings.HasPrefix(out.String(), "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03") {
					t.Fatalf("the container read %q", out.String())
				}
				// Closing stdin ended the container, as stdin_once asks.
				if st := waitExited(t, berth, id); st.ExitCode != 0 {
					t.Fatalf("exit code %d", st.ExitCode)
				}
			})

			t.Run("tty with resize", func(t *testing.T) {
				cfg := containerConfig("tty-"+strings.ToLower(proto.name), "")
				cfg.Command, cfg.Args = []string{"sh"}, nil
				cfg.Stdin, cfg.Tty = true, true
				id := p.run(t, cfg)
				u := attachURL(t, berth, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Tty: true})
				// The shell exits 7; an attach reports no exit code.
				if err := interactiveShell(t, executor(t, u, proto, nil)); err != nil {
					t.Fatalf("attach: %v", err)
				}
				if st := waitExited(t, berth, id); st.ExitCode != 7 {
					t.Fatalf("exit code %d, want 7", st.ExitCode)
				}
			})
		})
	}

	t.Run("requests Berth refuses", func(t *testing.T) {
		stopped := p.create(t, containerConfig("stopped", "true"))
		for _, tc := range []struct {
			name string
			req  *runtimeapi.AttachRequest
			code codes.Code
		}{
			{"tty with stderr", &runtimeapi.AttachRequest{ContainerId: ticker, Tty: true, Stdout: true, Stderr: true}, codes.InvalidArgument},
			{"no streams", &runtimeapi.AttachRequest{ContainerId: ticker}, codes.InvalidArgument},
			{"unknown container", &runtimeapi.AttachRequest{ContainerId: "nosuchcontainer", Stdout: true}, codes.NotFound},
			{"container not running", &runtimeapi.AttachRequest{ContainerId: stopped, Stdout: true}, codes.FailedPrecondition},
		} {
			if _, err := berth.RuntimeClient.Attach(context.Background(), tc.req); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	})
}
