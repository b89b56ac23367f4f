package process

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     stat
		bad      bool
	}{
		{name: "plain", in: "42 (sh) S 1 42 42 0 -1 4194560", want: stat{state: 'S', session: 42}},
		{name: "name with spaces and parens", in: "7 (a) b (c) R 3 7 99 0", want: stat{state: 'R', session: 99}},
		{name: "zombie", in: "8 (x) Z 1 8 5 0", want: stat{state: 'Z', session: 5}},
		{name: "truncated", in: "8 (x) Z 1", bad: true},
		{name: "no name", in: "8 x Z 1 2 3", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseStat(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestKillSession starts a session leader with a child and an orphaned
// grandchild (its parent exited) and checks that all three die.
func TestKillSession(t *testing.T) {
	pidFile := t.TempDir() + "/orphan"
	cmd := exec.Command("sh", "-c", `sleep 300 & sh -c 'sleep 300 & echo $! > `+pidFile+`' ; wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var orphan int
	deadline := time.Now().Add(10 * time.Second)
	for orphan == 0 {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			orphan = atoi(t, strings.TrimSpace(string(b)))
		} else if time.Now().After(deadline) {
			t.Fatal("the orphan never wrote its pid")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	ns, err := PidNamespace(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	members, err := sessionMembers(cmd.Process.Pid, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) < 3 {
		t.Fatalf("session %d has members %v, want the leader, its sleep and the orphan", cmd.Process.Pid, members)
	}
	if _, err := KillSession(cmd.Process.Pid, ns); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The orphan's parent is init (or a subreaper), which reaps it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, err := readStat(orphan)
		if err != nil || st.state == 'Z' || st.session != cmd.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d still runs (state %c)", orphan, st.state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKillSessionWrongNamespaceSparesProcess(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	n, err := KillSession(cmd.Process.Pid, "pid:[1]")
	if err != nil || n != 0 {
		t.Fatalf("KillSession in another namespace = %d, %v; want 0, nil", n, err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process was killed: %v", err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a pid: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
