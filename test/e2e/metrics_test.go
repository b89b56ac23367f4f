package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestDockerRequestMetrics: berth_docker_request_duration_seconds counts
// the Docker requests a pod's start makes, under operations that name the
// request and never an id.
func TestDockerRequestMetrics(t *testing.T) {
	t.Parallel()
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(), "--metrics-address", "127.0.0.1:0")})
	id := runPod(t, b, podConfig("docker-metrics"))
	t.Cleanup(func() { removePod(t, b, id) })
	if _, err := b.RuntimeClient.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	count := regexp.MustCompile(`(?m)^berth_docker_request_duration_seconds_count\{operation="([^"]*)"\} (\S+)$`)
	eventually(t, time.Minute, func() error {
		metrics, err := b.HTTPGet("/metrics")
		if err != nil {
			return err
		}
		seen := map[string]string{}
		for _, m := range count.FindAllStringSubmatch(metrics, -1) {
			seen[m[1]] = m[2]
			if regexp.MustCompile(`[0-9a-f]{12}|docker-metrics`).MatchString(m[1]) {
				return fmt.Errorf("operation %q names a container", m[1])
			}
		}
		for _, op := range []string{"POST /containers/create", "POST /containers/{id}/start", "GET /containers/{id}/json", "HEAD /_ping", "GET /info"} {
			if n, ok := seen[op]; !ok || n == "0" {
				return fmt.Errorf("no %q among the operations counted: %v", op, seen)
			}
		}
		return nil
	})
}
