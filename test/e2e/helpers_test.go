package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// runID labels everything this test process creates.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// podConfig returns a sandbox config with a unique uid, labelled with the
// run id so a test can find what it made.
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	uid := "uid-" + randomSuffix()
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "berth-e2e", Uid: uid},
		Hostname: name,
		Labels:   map[string]string{"berth-e2e-run": runID, "app": name},
		Annotations: map[string]string{
			"berth.test/annotation": "value",
		},
		LogDirectory: "/tmp/berth-e2e-logs/" + uid,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// runPod runs a sandbox and removes it when the test ends.
func runPod(t *testing.T, b *framework.Berth, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	id, err := b.Runtime.RunPodSandbox(context.Background(), cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	t.Cleanup(func() { removePod(t, b, id) })
	return id
}

func removePod(t *testing.T, b *framework.Berth, id string) {
	ctx := context.Background()
	if b.Runtime == nil {
		return
	}
	if err := b.Runtime.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("cleanup: StopPodSandbox(%s): %v", id, err)
	}
	if err := b.Runtime.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("cleanup: RemovePodSandbox(%s): %v", id, err)
	}
}

func podStatus(t *testing.T, b *framework.Berth, id string) *runtimeapi.PodSandboxStatus {
	t.Helper()
	st, err := b.Runtime.PodSandboxStatus(context.Background(), id, false)
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	return st.GetStatus()
}

// docker runs the docker CLI against the suite's daemon.
func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(cmd.Environ(), "DOCKER_HOST="+framework.DockerHost())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// inPod runs a shell command in a throw-away busybox container that joins
// the pod's network (and, with pid, PID) namespace, and returns its output.
func inPod(t *testing.T, sandboxID string, script string) (string, error) {
	t.Helper()
	return docker(t, "run", "--rm", "--label", "berth-e2e-run="+runID, "--network", "container:"+sandboxID,
		framework.TestImage, "sh", "-c", script)
}

// startInPod starts a long-running busybox container in the pod's network
// namespace (a server, say); it is removed when the test ends.
func startInPod(t *testing.T, sandboxID string, script string) string {
	t.Helper()
	id, err := docker(t, "run", "-d", "--label", "berth-e2e-run="+runID, "--network", "container:"+sandboxID,
		framework.TestImage, "sh", "-c", script)
	if err != nil {
		t.Fatalf("starting a helper in pod %s: %v: %s", sandboxID, err, id)
	}
	t.Cleanup(func() { _, _ = docker(t, "rm", "-f", id) })
	return id
}

// eventually retries fn until it returns nil or timeout passes (Scaled
// for a slow node).
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	timeout = framework.Scaled(timeout)
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parallel runs fn(i) for i in [0,n) concurrently and waits.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); fn(i) }(i)
	}
	wg.Wait()
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// recvAll reads a server stream to its end (recv is the stream's Recv),
// failing t on any error but the end.
func recvAll[R any](t *testing.T, recv func() (R, error)) []R {
	t.Helper()
	var out []R
	for {
		r, err := recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}
