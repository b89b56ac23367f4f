package sockdiag

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// holdEnv makes the test binary, re-executed, connect to the socket it
// names and wait.
const holdEnv = "BERTH_SOCKDIAG_TEST_HOLD"

// acceptEnv makes the test binary, re-executed, accept a connection on the
// listener it inherits as fd 3.
const acceptEnv = "BERTH_SOCKDIAG_TEST_ACCEPT"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Exit(1)
		}
		time.Sleep(time.Minute)
		c.Close()
		os.Exit(0)
	}
	if os.Getenv(acceptEnv) != "" {
		// Accept one connection on the inherited listener (fd 3),
		// answer its byte, and hold it.
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			os.Exit(1)
		}
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		b := make([]byte, 1)
		_, _ = c.Read(b)
		_, _ = c.Write(b)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUnixSockets checks the sock_diag parser against a socket pair this
// test makes: both ends are listed, each the other's peer.
func TestUnixSockets(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/s.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	holders, err := Holders("/proc", path)
	if err != nil {
		t.Fatal(err)
	}
	// The listener is this process, which socketHolders leaves out.
	if len(holders) != 0 {
		t.Errorf("holders of a socket only this process uses: %+v", holders)
	}
	socks, err := unixSockets()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range socks {
		if s.Name == path {
			found = true
		}
	}
	if !found {
		t.Errorf("sock_diag did not list the listener at %s", path)
	}
}

// TestHoldersFindsAConnectedProcess: a child process connected to a socket
// this test listens on is found, with its pid and command name.
func TestHoldersFindsAConnectedProcess(t *testing.T) {
	path := t.TempDir() + "/h.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the child never connected")
	}
	holders, err := Holders("/proc", path)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range holders {
		if h.PID == cmd.Process.Pid && !h.Serving {
			found = true
		}
		if h.PID == os.Getpid() {
			t.Errorf("the caller itself is listed: %+v", h)
		}
	}
	if !found {
		t.Errorf("pid %d not among the holders %+v", cmd.Process.Pid, holders)
	}
}

// TestAcceptor: the process holding the accepted end of a connection is
// found, not the one that listened: a child accepts on a listener this
// process made, as dockerd does on systemd's docker.socket.
func TestAcceptor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	// A child that accepts one connection on the inherited listener.
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), acceptEnv+"=1")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	f.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("p")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	pid, err := Acceptor("/proc", c.(*net.UnixConn))
	if err != nil || pid != cmd.Process.Pid {
		t.Errorf("Acceptor = %d, %v; want the child %d", pid, err, cmd.Process.Pid)
	}
}
