// Package e2e is Berth's conformance suite: every RPC against a real Docker
// Engine, driven through k8s.io/cri-client, the client kubelet uses.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/berth-cri/berth/test/framework"
)

// berth is the shared instance most tests use; tests that need their own
// flags, or restart or kill Berth, start another. Its pods get their network
// from sharedNet.
var (
	berth     *framework.Berth
	sharedNet *framework.CNINetwork
)

func TestMain(m *testing.M) {
	code := run(m)
	if err := framework.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: removing the framework's temporary files:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	v, err := framework.RequireDocker(context.Background())
	if err != nil {
		// In CI a missing prerequisite is a failure, never a skip.
		fmt.Fprintln(os.Stderr, "e2e: FAIL:", err)
		return 1
	}
	fmt.Printf("e2e: Docker %s (API %s, minimum API %s) at %s\n", v.Version, v.APIVersion, v.MinAPIVersion, framework.DockerHost())
	if err := framework.CheckDockerdBinary(v.Version); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: FAIL:", err)
		return 1
	}
	fmt.Printf("e2e: private daemons run %s\n", strings.Join(append([]string{framework.DockerdBinary()}, framework.DockerdArgs()...), " "))
	if _, err := framework.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: FAIL: building berth:", err)
		return 1
	}
	tb := &mainTB{}
	sharedNet = framework.NewCNINetwork(tb, framework.CNIOptions{})
	defer tb.cleanup()
	berth, err = framework.Start(framework.Options{Args: sharedNet.Args()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: FAIL: starting berth:", err)
		return 1
	}
	code := m.Run()
	if leaks := leakCheck(berth.RootDir); len(leaks) > 0 {
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "e2e: LEAK:", l)
		}
		code = 1
	}
	if err := berth.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping the shared berth:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "shared berth log:\n%s\n", berth.Log())
	}
	return code
}
