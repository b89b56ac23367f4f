package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
)

// TestDialIntoNamespace listens on 127.0.0.1 inside a fresh network
// namespace (unshare(1)) and dials it from here: a connection to the same
// port in the test's own namespace would be refused.
func TestDialIntoNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("needs unshare(1) (util-linux)")
	}
	// The test binary itself serves, re-executed in the new namespace.
	cmd := exec.Command("unshare", "--net", os.Args[0])
	cmd.Env = append(os.Environ(), "BERTH_NETNS_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 64)
	n, err := out.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimSpace(string(buf[:n]))
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatalf("helper said %q", buf[:n])
	}

	nsPath := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Dial(ctx, nsPath, "tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello from the namespace\n" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestMain doubles as the helper server when re-executed by
// TestDialIntoNamespace: it brings up lo in its fresh namespace, prints the
// port it listens on, and greets one connection.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_NETNS_HELPER") != "1" {
		os.Exit(m.Run())
	}
	fail := func(err error) { os.Stderr.WriteString(err.Error() + "\n"); os.Exit(1) }
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		fail(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString(strconv.Itoa(l.Addr().(*net.TCPAddr).Port) + "\n")
	c, err := l.Accept()
	if err != nil {
		fail(err)
	}
	c.Write([]byte("hello from the namespace\n"))
	c.Close()
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestDialMissingNamespace(t *testing.T) {
	if _, err := Dial(context.Background(), "/nonexistent/ns/net", "tcp4", "127.0.0.1:1"); err == nil {
		t.Fatal("Dial into a missing namespace succeeded")
	}
}

// TestADialThatPanicsFailsWithAnInternalError: the panic reaches the
// caller as an error, and the next dial works.
func TestADialThatPanicsFailsWithAnInternalError(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var once sync.Once
	defer panics.SetHook(func(where string) {
		if where == panics.Netns {
			once.Do(func() { panic("boom") })
		}
	})()
	if _, err := Dial(context.Background(), "/proc/self/ns/net", "tcp4", l.Addr().String()); !errors.Is(err, errdefs.ErrInternal) {
		t.Fatalf("Dial = %v, want an internal error", err)
	}
	conn, err := Dial(context.Background(), "/proc/self/ns/net", "tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("the next Dial: %v", err)
	}
	conn.Close()
}
