package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/test/framework"
)

// rawExec does what `docker exec CONTAINER true` does on the Docker API:
// create the exec, start it attached, read its output to the end, and
// inspect it for the exit code.
func rawExec(ctx context.Context, dc *client.Client, containerID string, cmd []string) (int, error) {
	ex, err := dc.ExecCreate(ctx, containerID, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, err
	}
	att, err := dc.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, err
	}
	_, err = stdcopy.StdCopy(io.Discard, io.Discard, att.Reader)
	att.Close()
	if err != nil {
		return 0, err
	}
	st, err := dc.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	return st.ExitCode, err
}

// BenchmarkExecSync alternates ExecSync of `true` in a running container
// with the same exec done directly on the Docker API, and reports both
// latencies and Berth's overhead.
func BenchmarkExecSync(b *testing.B) {
	ctx := context.Background()
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--log-level", "info")})
	dc, err := framework.DockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	podCfg := podConfig("execbench", 0)
	podCfg.LogDirectory = b.TempDir()
	podID, err := br.Runtime.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = br.Runtime.StopPodSandbox(ctx, podID)
		_ = br.Runtime.RemovePodSandbox(ctx, podID)
	})
	id, err := br.Runtime.CreateContainer(ctx, podID, containerConfig("main"), podCfg)
	if err == nil {
		err = br.Runtime.StartContainer(ctx, id)
	}
	if err != nil {
		b.Fatal(err)
	}
	cmd := []string{"true"}
	// Warm up both paths (connections, page cache).
	if _, _, err := br.Runtime.ExecSync(ctx, id, cmd, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	if _, err := rawExec(ctx, dc, id, cmd); err != nil {
		b.Fatal(err)
	}

	var raw, berth []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		code, err := rawExec(ctx, dc, id, cmd)
		raw = append(raw, time.Since(start))
		if err != nil || code != 0 {
			b.Fatalf("docker exec: exit code %d, %v", code, err)
		}
		start = time.Now()
		_, _, err = br.Runtime.ExecSync(ctx, id, cmd, 10*time.Second)
		berth = append(berth, time.Since(start))
		if err != nil {
			b.Fatalf("ExecSync: %v", err)
		}
	}
	report(b, berth, raw)
}
