package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/test/framework"
)

func execSync(t *testing.T, b *framework.Berth, id string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	t.Helper()
	return b.RuntimeClient.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
}

func TestExecSync(t *testing.T) {
	p := newPod(t, berth, "exec-sync")
	id := p.run(t, containerConfig("main", "exec sleep 3600"))

	t.Run("output and exit code", func(t *testing.T) {
		resp, err := execSync(t, berth, id, 0, "sh", "-c", "echo out; echo err >&2; exit 3")
		if err != nil {
			t.Fatalf("a non-zero exit code is a result, not an error: %v", err)
		}
		if string(resp.Stdout) != "out\n" || string(resp.Stderr) != "err\n" || resp.ExitCode != 3 {
			t.Fatalf("got stdout %q, stderr %q, exit code %d", resp.Stdout, resp.Stderr, resp.ExitCode)
		}
	})

	t.Run("through cri-client", func(t *testing.T) {
		stdout, stderr, err := berth.Runtime.ExecSync(context.Background(), id, []string{"sh", "-c", "echo hi; exit 2"}, 10*time.Second)
		var exit utilexec.ExitError
		if err == nil || !asExit(err, &exit) || exit.ExitStatus() != 2 {
			t.Fatalf("ExecSync: %v (want exit code 2)", err)
		}
		if string(stdout) != "hi\n" || len(stderr) != 0 {
			t.Fatalf("stdout %q, stderr %q", stdout, stderr)
		}
	})

	t.Run("missing and unrunnable commands", func(t *testing.T) {
		for _, tc := range []struct {
			cmd  string
			code int32
			says string
		}{
			{"no-such-binary", 127, "not found"},
			{"/no/such/path", 127, "no such file"},
			{"/etc/passwd", 126, "permission denied"},
		} {
			resp, err := execSync(t, berth, id, 10, tc.cmd)
			if err != nil {
				t.Fatalf("%s: %v", tc.cmd, err)
			}
			if resp.ExitCode != tc.code || len(resp.Stdout) != 0 || !strings.Contains(strings.ToLower(string(resp.Stderr)), tc.says) {
				t.Errorf("%s: exit code %d, stdout %q, stderr %q; want %d and a message saying %q", tc.cmd, resp.ExitCode, resp.Stdout, resp.Stderr, tc.code, tc.says)
			}
		}
	})

	t.Run("timeout kills the command and what it started", func(t *testing.T) {
		// A child in the background, a grandchild orphaned by its parent,
		// and the command itself: all must die.
		_, err := execSync(t, berth, id, 2, "sh", "-c", "sleep 86001 & sh -c 'sleep 86002 &'; exec sleep 86003")
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("ExecSync past its timeout: %v, want DeadlineExceeded", err)
		}
		eventually(t, 30*time.Second, func() error {
			ps := dockerExec(t, id, "ps")
			for _, m := range []string{"sleep 86001", "sleep 86002", "sleep 86003"} {
				if strings.Contains(ps, m) {
					return fmt.Errorf("%q still runs:\n%s", m, ps)
				}
			}
			return nil
		})
	})

	t.Run("output is capped", func(t *testing.T) {
		resp, err := execSync(t, berth, id, 60, "head", "-c", "20000000", "/dev/zero")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.Stdout); n > 16<<20 || n < 16<<20-64<<10 || resp.ExitCode != 0 {
			t.Fatalf("20 MB of output came back as %d bytes, exit code %d; want just under 16 MiB and 0", n, resp.ExitCode)
		}
		resp, err = execSync(t, berth, id, 60, "sh", "-c", "head -c 10000000 /dev/zero; head -c 10000000 /dev/zero >&2; exit 4")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.Stdout) + len(resp.Stderr); n > 16<<20 || len(resp.Stdout) != 10000000 || resp.ExitCode != 4 {
			t.Fatalf("stdout %d and stderr %d bytes, exit code %d; want 10000000 of stdout, a total within 16 MiB and 4",
				len(resp.Stdout), len(resp.Stderr), resp.ExitCode)
		}
	})

	t.Run("errors", func(t *testing.T) {
		stopped := p.create(t, containerConfig("stopped", "true"))
		for _, tc := range []struct {
			name string
			req  *runtimeapi.ExecSyncRequest
			code codes.Code
		}{
			{"unknown container", &runtimeapi.ExecSyncRequest{ContainerId: "nosuchcontainer", Cmd: []string{"true"}}, codes.NotFound},
			{"container not running", &runtimeapi.ExecSyncRequest{ContainerId: stopped, Cmd: []string{"true"}}, codes.FailedPrecondition},
			{"no command", &runtimeapi.ExecSyncRequest{ContainerId: id}, codes.InvalidArgument},
			{"no container id", &runtimeapi.ExecSyncRequest{Cmd: []string{"true"}}, codes.InvalidArgument},
		} {
			if _, err := berth.RuntimeClient.ExecSync(context.Background(), tc.req); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	})
}

// TestExecSyncOutputForever: a command printing without end is read and
// discarded beyond the cap, not buffered: Berth's peak memory stays far
// below what the command printed. A private berth, so no other test's work
// counts.
func TestExecSyncOutputForever(t *testing.T) {
	b := framework.StartBerth(t, framework.Options{Args: sharedNet.Args()})
	id := runningContainer(t, b, "exec-forever", "exec sleep 3600")
	before := peakRSS(t, b.Pid())
	_, err := execSync(t, b, id, 8, "sh", "-c", "exec yes $(head -c 1000 /dev/zero | tr '\\0' x)")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ExecSync of an endless printer: %v, want DeadlineExceeded", err)
	}
	after := peakRSS(t, b.Pid())
	// 16 MiB are kept; the rest (typically hundreds of MiB in 8 s) must not be.
	grew := after - before
	t.Logf("berth's peak memory grew by %d MiB", grew>>20)
	if grew > 64<<20 {
		t.Fatalf("berth's peak memory grew by %d MiB", grew>>20)
	}
	eventually(t, 30*time.Second, func() error {
		if ps := dockerExec(t, id, "ps"); strings.Contains(ps, "yes") {
			return fmt.Errorf("yes still runs:\n%s", ps)
		}
		return nil
	})
}

// peakRSS reads a process's peak resident memory (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

func asExit(err error, target *utilexec.ExitError) bool {
	e, ok := err.(utilexec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

func TestExecStreams(t *testing.T) {
	p := newPod(t, berth, "exec-streams")
	id := p.run(t, containerConfig("main", "exec sleep 3600"))

	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Run("stdin checksum", func(t *testing.T) {
				data := make([]byte, 4<<20+123)
				if _, err := rand.Read(data); err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sha256sum"}, Stdin: true, Stdout: true})
				var out bytes.Buffer
				err := executor(t, u, proto, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: bytes.NewReader(data), Stdout: &out})
				if code := exitCode(t, err); code != 0 {
					t.Fatalf("exit code %d", code)
				}
				if got := strings.Fields(out.String()); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
					t.Fatalf("the container computed %q, want %s", out.String(), hex.EncodeToString(sum[:]))
				}
			})

			t.Run("separate stderr and exit code", func(t *testing.T) {
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Stdout: true, Stderr: true})
				var out, errOut bytes.Buffer
				err := executor(t, u, proto, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
				if code := exitCode(t, err); code != 3 {
					t.Fatalf("exit code %d, want 3", code)
				}
				if out.String() != "out\n" || errOut.String() != "err\n" {
					t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
				}
			})

			t.Run("tty merges stderr", func(t *testing.T) {
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: true, Tty: true})
				var out bytes.Buffer
				err := executor(t, u, proto, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Tty: true})
				if code := exitCode(t, err); code != 0 {
					t.Fatalf("exit code %d", code)
				}
				if out.String() != "out\r\nerr\r\n" {
					t.Fatalf("terminal output %q, want both lines", out.String())
				}
			})

			t.Run("interactive shell with resize", func(t *testing.T) {
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Stdin: true, Stdout: true, Tty: true})
				if code := exitCode(t, interactiveShell(t, executor(t, u, proto, nil))); code != 7 {
					t.Fatalf("exit code %d, want 7", code)
				}
			})

			t.Run("missing binary", func(t *testing.T) {
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"no-such-binary"}, Stdout: true, Stderr: true})
				var out, errOut bytes.Buffer
				err := executor(t, u, proto, nil).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
				if code := exitCode(t, err); code != 127 {
					t.Fatalf("exit code %d, want 127", code)
				}
				if !strings.Contains(err.Error()+out.String()+errOut.String(), "no-such-binary") {
					t.Fatalf("nothing names the missing binary: %v, %q, %q", err, out.String(), errOut.String())
				}
			})

			t.Run("a client going away kills the command", func(t *testing.T) {
				marker := "sleep 8620" + strconv.Itoa(len(proto.name))
				u := execURL(t, berth, &runtimeapi.ExecRequest{ContainerId: id, Cmd: strings.Fields(marker), Stdout: true})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() {
					done <- executor(t, u, proto, nil).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &bytes.Buffer{}})
				}()
				eventually(t, 30*time.Second, func() error {
					if !strings.Contains(dockerExec(t, id, "ps"), marker) {
						return fmt.Errorf("%q has not started", marker)
					}
					return nil
				})
				cancel()
				<-done
				eventually(t, 30*time.Second, func() error {
					if ps := dockerExec(t, id, "ps"); strings.Contains(ps, marker) {
						return fmt.Errorf("%q still runs:\n%s", marker, ps)
					}
					return nil
				})
			})
		})
	}

	t.Run("requests Berth refuses", func(t *testing.T) {
		stopped := p.create(t, containerConfig("stopped", "true"))
		for _, tc := range []struct {
			name string
			req  *runtimeapi.ExecRequest
			code codes.Code
		}{
			{"tty with stderr", &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: true, Stdout: true, Stderr: true}, codes.InvalidArgument},
			{"no streams", &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}}, codes.InvalidArgument},
			{"no command", &runtimeapi.ExecRequest{ContainerId: id, Stdout: true}, codes.InvalidArgument},
			{"unknown container", &runtimeapi.ExecRequest{ContainerId: "nosuchcontainer", Cmd: []string{"sh"}, Stdout: true}, codes.NotFound},
			{"container not running", &runtimeapi.ExecRequest{ContainerId: stopped, Cmd: []string{"sh"}, Stdout: true}, codes.FailedPrecondition},
		} {
			if _, err := berth.RuntimeClient.Exec(context.Background(), tc.req); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	})
}
