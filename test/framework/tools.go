package framework

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FreePort returns a TCP port nothing listens on on 127.0.0.1 right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BuiltTool returns the path of a tool the suites build from the Go module
// proxy: the path in the environment variable env if it is set, else what
// the script under hack/ prints (it builds the tool, or finds it cached).
func BuiltTool(t testing.TB, env, script string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", script))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/%s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
