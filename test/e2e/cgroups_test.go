package e2e

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

var (
	driverOnce sync.Once
	driver     string // Docker's cgroup driver, once asked
	driverErr  error
)

// dockerCgroupDriver returns the suite's Docker's cgroup driver, "cgroupfs"
// or "systemd": what the cgroup parents kubelet gives look like depends on
// it (kubelet takes it from RuntimeConfig).
func dockerCgroupDriver(t *testing.T) string {
	t.Helper()
	driverOnce.Do(func() {
		var c *client.Client
		if c, driverErr = framework.DockerClient(); driverErr != nil {
			return
		}
		defer c.Close()
		var res client.SystemInfoResult
		if res, driverErr = c.Info(context.Background(), client.InfoOptions{}); driverErr == nil {
			driver = res.Info.CgroupDriver
		}
	})
	if driverErr != nil {
		t.Fatalf("docker info: %v", driverErr)
	}
	return driver
}

// testCgroupParent returns a fresh cgroup parent for a pod, shaped as
// kubelet shapes one for Docker's cgroup driver — a path under cgroupfs
// ("/berth-e2e-<random>"), a systemd slice path under systemd
// ("/berth_e2e.slice/berth_e2e-<random>.slice", as kubelet sends
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice")
// — and where the pod's cgroup then is, relative to the hierarchy's root.
// The cgroup is removed when the test ends: call it before the pod is run,
// so that this runs after the pod is gone.
func testCgroupParent(t *testing.T) (parent, rel string) {
	t.Helper()
	suffix := randomSuffix()
	if dockerCgroupDriver(t) == "systemd" {
		parent = "/berth_e2e.slice/berth_e2e-" + suffix + ".slice"
		t.Cleanup(func() {
			// systemd owns the slice; it stays (empty) until stopped.
			_ = exec.Command("systemctl", "stop", path.Base(parent)).Run()
		})
		return parent, parent
	}
	parent = "/berth-e2e-" + suffix
	t.Cleanup(func() { removeCgroup(parent) })
	return parent, parent
}

// removeCgroup removes a cgroupfs-driver cgroup parent from every v1
// hierarchy (and from the v2 tree), once its containers are gone.
func removeCgroup(parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		_ = os.Remove(filepath.Join(r, parent))
	}
}

// podCgroupDir returns the directory of a pod's cgroup that holds
// controller's files (any controller on cgroup v2): the parent of its pause
// container's cgroup, found from the process as the kernel places it.
func podCgroupDir(t *testing.T, sandboxID, controller string) string {
	t.Helper()
	paths, err := cgroups.Paths(containerPid(t, sandboxID))
	if err != nil {
		t.Fatal(err)
	}
	if cgroups.IsV2() {
		controller = ""
	}
	dir, ok := paths[controller]
	if !ok {
		t.Fatalf("the pause container of %s has no %q cgroup in %v", sandboxID, controller, paths)
	}
	return filepath.Dir(dir)
}
