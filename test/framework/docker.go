package framework

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/moby/moby/client"
)

// TestImage is the busybox image hack/build-test-images.sh builds locally
// (from Debian's busybox-static; nothing is pulled).
const TestImage = "berth-test/busybox:latest"

// DockerClient returns a moby client for DockerHost(), for tests that check
// what Berth did directly in Docker.
func DockerClient() (*client.Client, error) {
	return client.New(client.WithHost(DockerHost()))
}

// RequireDocker checks that the daemon answers and the test image exists. A
// missing prerequisite is an error, never a reason to skip.
func RequireDocker(ctx context.Context) (client.ServerVersionResult, error) {
	c, err := DockerClient()
	if err != nil {
		return client.ServerVersionResult{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, Scaled(10*time.Second))
	defer cancel()
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return v, fmt.Errorf("%w at %s: %v (%s)", ErrNoDocker, DockerHost(), err, setupHint())
	}
	if _, err := c.ImageInspect(ctx, TestImage); err != nil {
		return v, fmt.Errorf("test image %s is missing at %s: %v (%s)", TestImage, DockerHost(), err, setupHint())
	}
	return v, nil
}

// setupHint names the script that sets up the daemon the suite runs against.
func setupHint() string {
	if os.Getenv("BERTH_TEST_DOCKER_HOST") != "" {
		return "run hack/setup-docker-current.sh for the current engine, or the set-up of the daemon BERTH_TEST_DOCKER_HOST names"
	}
	return "run hack/setup.sh"
}
