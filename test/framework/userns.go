package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EngineRunc is the runc the engine under test runs by default: the path
// DockerdArgs registers for its --default-runtime, else runc on PATH (the
// system daemon's).
func EngineRunc() (string, error) {
	args := DockerdArgs()
	def := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--default-runtime" {
			def = args[i+1]
		}
	}
	for i := 0; i+1 < len(args); i++ {
		if name, path, ok := strings.Cut(args[i+1], "="); args[i] == "--add-runtime" && ok && name == def {
			return path, nil
		}
	}
	return exec.LookPath("runc")
}

// UsernsWrapperArgs are the dockerd flags that register Berth's OCI
// runtime wrapper (`berth oci-runtime`, in front of EngineRunc) as the
// runtime berth-userns in a private daemon, through a script in a
// directory removed when tb ends.
func UsernsWrapperArgs(tb testing.TB) []string {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	runc, err := EngineRunc()
	if err != nil {
		tb.Fatal(err)
	}
	script := filepath.Join(tb.TempDir(), "berth-userns")
	body := fmt.Sprintf("#!/bin/sh\nexec %s oci-runtime --runc %s \"$@\"\n", bin, runc)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		tb.Fatal(err)
	}
	return []string{"--add-runtime", "berth-userns=" + script}
}
