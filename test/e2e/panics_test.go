package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// panicKinds are the goroutine kinds (internal/panics) this test makes
// panic once each in a real berth serve, through BERTH_TEST_PANIC in a
// berth_testhooks build. Left out: rpc (the interceptor, which recovers by
// itself and has its unit test), stats_worker (a list call spreads over
// workers only from 16 pods on; internal/cri's unit test), netns and
// server (their unit tests: internal/netns; Serve does not return).
var panicKinds = []string{
	"recovery", "docker", "event_hub", "event_watch", "stats_sampler", "layer_sampler",
	"logs", "flight", "image_lookup", "detached_run", "streaming",
}

// TestBerthSurvivesAPanicInEachKindOfGoroutine: each kind of goroutine
// panics once; the call waiting for it (if any) fails with Internal, the
// next one works, every panic is logged with its stack and counted in
// berth_panics_total, and the process serves on.
func TestBerthSurvivesAPanicInEachKindOfGoroutine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := pushImage(t, reg.Addr, framework.ImageOptions{})
	// Start-up panics (recovery, the first Docker probe, the first layer
	// measure) only delay readiness: Start waits for Version and
	// ImageFsInfo to answer.
	b := framework.StartBerth(t, framework.Options{
		Args:      append(sharedNet.Args(), "--metrics-address", "127.0.0.1:0"),
		TestHooks: true,
		Env:       []string{"BERTH_TEST_PANIC=" + strings.Join(panicKinds, ",")},
	})
	internalThenOK := func(what string, call func() error) {
		t.Helper()
		if err := call(); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "panic") {
			t.Errorf("%s with a panic injected: %v, want Internal naming the panic", what, err)
		}
		if err := call(); err != nil {
			t.Errorf("%s after the panic: %v", what, err)
		}
	}

	// flight: a pull shared by its callers.
	internalThenOK("PullImage", func() error {
		_, err := pull(ctx, b, img.Ref, nil)
		return err
	})
	t.Cleanup(func() { _, _ = docker(t, "rmi", img.Ref) })
	// image_lookup: ListImages inspects the images it has not seen.
	internalThenOK("ListImages", func() error {
		_, err := b.ImageClient.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		return err
	})

	events := watchEvents(t, b)
	// detached_run: RunPodSandbox's work.
	cfg := podConfig("panics")
	cfg.LogDirectory = t.TempDir()
	var sandboxID string
	internalThenOK("RunPodSandbox", func() error {
		resp, err := b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		sandboxID = resp.GetPodSandboxId()
		return err
	})
	if sandboxID == "" {
		t.FailNow()
	}
	t.Cleanup(func() { removePod(t, b, sandboxID) })
	p := &pod{b: b, id: sandboxID, cfg: cfg}
	id := p.run(t, containerConfig("main", "echo started; exec sleep 3600"))
	// event_hub and event_watch panicked on the first changes and Docker
	// events; the hub resynced and the watcher resynced the index.
	events.expect(t, time.Minute, want{id, evCreated}, want{id, evStarted})

	// streaming: the copy of an exec's output.
	internalThenOK("ExecSync", func() error {
		resp, err := b.RuntimeClient.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "hi"}, Timeout: 30})
		if err == nil && strings.TrimSpace(string(resp.Stdout)) != "hi" {
			err = fmt.Errorf("stdout %q", resp.Stdout)
		}
		return err
	})
	// logs: forwarding went on after its panic.
	eventually(t, time.Minute, func() error {
		log, err := os.ReadFile(filepath.Join(cfg.LogDirectory, "main.log"))
		if err != nil || !strings.Contains(string(log), "started") {
			return fmt.Errorf("the container's log has %q (%v)", log, err)
		}
		return nil
	})

	// Every panic was logged with its stack and counted, once.
	eventually(t, time.Minute, func() error {
		metrics, err := b.HTTPGet("/metrics")
		if err != nil {
			return err
		}
		for _, kind := range panicKinds {
			re := regexp.MustCompile(`(?m)^berth_panics_total\{where="` + kind + `"\} (\S+)$`)
			if m := re.FindStringSubmatch(metrics); m == nil || m[1] != "1" {
				return fmt.Errorf("berth_panics_total{where=%q} = %v, want 1", kind, m)
			}
		}
		return nil
	})
	logText := b.Log()
	for _, kind := range panicKinds {
		if !regexp.MustCompile(`recovered from a panic.*where=` + kind + ` .*stack=`).MatchString(logText) {
			t.Errorf("no panic logged with its stack for %s", kind)
		}
	}
	if _, err := b.Runtime.Version(ctx, ""); err != nil {
		t.Errorf("Version after the panics: %v", err)
	}
}
