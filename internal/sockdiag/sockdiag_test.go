package sockdiag

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// holdEnv makes the test binary, re-executed, connect to the socket it
// names and wait.
const holdEnv = "BERTH_SOCKDIAG_TEST_HOLD"

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
