package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

// cgroupFile reads a cgroup file of a running container from the host; on
// cgroup v2 every controller's files are in the one directory.
func cgroupFile(t *testing.T, b *framework.Berth, id, controller, file string) string {
	t.Helper()
	pid := containerPid(t, id)
	paths, err := cgroups.Paths(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cgroups.IsV2() {
		controller = ""
	}
	data, err := os.ReadFile(filepath.Join(paths[controller], file))
	if err != nil {
		t.Fatalf("reading %s/%s: %v", controller, file, err)
	}
	return strings.TrimSpace(string(data))
}

func containerPid(t *testing.T, id string) int {
	t.Helper()
	out, err := docker(t, "inspect", "-f", "{{.State.Pid}}", id)
	pid, _ := strconv.Atoi(out)
	if err != nil || pid == 0 {
		t.Fatalf("pid of %s: %q %v", id, out, err)
	}
	return pid
}

// TestResourcesUnified: cgroup v2 settings (resources.unified) are written
// to the container's cgroup, which Docker's API cannot express; on a
// cgroup v1 host they are refused.
func TestResourcesUnified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "res-unified")
	cfg := containerConfig("unified", "sleep 3600")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "67108864"}}
	if !cgroups.IsV2() {
		_, err := berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
		wantCode(t, err, codes.FailedPrecondition, "config.linux.resources.unified: cgroup v2 settings on a cgroup v1 host")
		return
	}
	id := p.run(t, cfg)
	if got := cgroupFile(t, berth, id, "", "memory.high"); got != "67108864" {
		t.Errorf("memory.high = %q", got)
	}
}

func TestResourcesLandInTheCgroup(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "res")
	cfg := containerConfig("limited", "sleep 3600")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{
		CpuPeriod:              100000,
		CpuQuota:               50000,
		CpuShares:              512,
		MemoryLimitInBytes:     64 << 20,
		MemorySwapLimitInBytes: 96 << 20,
		OomScoreAdj:            500,
		CpusetCpus:             "0",
		CpusetMems:             "0",
		HugepageLimits:         []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
	}
	id := p.run(t, cfg)
	want := []struct{ ctrl, file, want string }{
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.shares", "512"},
		{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20)},
		{"cpuset", "cpuset.cpus", "0"},
		{"cpuset", "cpuset.mems", "0"},
	}
	if cgroups.IsV2() {
		want = []struct{ ctrl, file, want string }{
			{"", "cpu.max", "50000 100000"},
			{"", "memory.max", strconv.Itoa(64 << 20)},
			{"", "memory.swap.max", strconv.Itoa(32 << 20)}, // v2 counts swap apart from memory
			{"", "cpuset.cpus", "0"},
			{"", "cpuset.mems", "0"},
		}
		// runc maps shares to a weight; newer runc replaced its linear
		// map with a curve that keeps 1024 shares at the default 100.
		if w := cgroupFile(t, berth, id, "", "cpu.weight"); w != "20" && w != "59" {
			t.Errorf("cpu.weight = %s for 512 shares, want 20 (older runc's linear map) or 59 (newer runc's curve)", w)
		}
	}
	for _, c := range want {
		if got := cgroupFile(t, berth, id, c.ctrl, c.file); got != c.want {
			t.Errorf("%s/%s = %s, want %s", c.ctrl, c.file, got, c.want)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		if got := cgroupFile(t, berth, id, "memory", "memory.memsw.limit_in_bytes"); got != strconv.Itoa(96<<20) {
			t.Errorf("memsw = %s", got)
		}
	}
	if adj, _ := os.ReadFile("/proc/" + strconv.Itoa(containerPid(t, id)) + "/oom_score_adj"); strings.TrimSpace(string(adj)) != "500" {
		t.Errorf("oom_score_adj = %s", adj)
	}
	r := containerStatus(t, berth, id).GetResources().GetLinux()
	if r.GetCpuQuota() != 50000 || r.GetCpuShares() != 512 || r.GetMemoryLimitInBytes() != 64<<20 || r.GetCpusetCpus() != "0" || r.GetOomScoreAdj() != 500 {
		t.Errorf("status resources = %v", r)
	}

	// A negative score is clamped where the host cannot lower it, instead
	// of failing in runc.
	neg := containerConfig("negative", "sleep 3600")
	neg.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}
	id = p.run(t, neg)
	adj, _ := os.ReadFile("/proc/" + strconv.Itoa(containerPid(t, id)) + "/oom_score_adj")
	if v, _ := strconv.Atoi(strings.TrimSpace(string(adj))); v < -997 || v > 0 {
		t.Errorf("oom_score_adj for -997 = %d", v)
	}
}

func TestUpdateContainerResources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "resize")
	cfg := containerConfig("c", "sleep 3600")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 20000}
	id := p.run(t, cfg)
	err := berth.Runtime.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{
		CpuShares: 1024, MemoryLimitInBytes: 128 << 20, CpuPeriod: 100000, CpuQuota: 80000,
	}})
	if err != nil {
		t.Fatal(err)
	}
	memFile, quotaFile, quota := "memory.limit_in_bytes", "cpu.cfs_quota_us", "80000"
	if cgroups.IsV2() {
		memFile, quotaFile, quota = "memory.max", "cpu.max", "80000 100000"
	}
	if got := cgroupFile(t, berth, id, "memory", memFile); got != strconv.Itoa(128<<20) {
		t.Errorf("memory limit after update = %s", got)
	}
	if got := cgroupFile(t, berth, id, "cpu", quotaFile); got != quota {
		t.Errorf("cpu quota after update = %s", got)
	}
	r := containerStatus(t, berth, id).GetResources().GetLinux()
	if r.GetCpuShares() != 1024 || r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuQuota() != 80000 {
		t.Errorf("status after update = %v", r)
	}
	_, err = berth.RuntimeClient.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "nope-nope", Linux: &runtimeapi.LinuxContainerResources{}})
	wantCode(t, err, codes.NotFound, "nope-nope")
}

// TestOOMKillIsReported: a container killed for memory exits OOMKilled;
// on cgroup v2, where memory.events counts a subtree's kills, the pod's
// cgroup reports the kill in container_oom_events_total too.
func TestOOMKillIsReported(t *testing.T) {
	t.Parallel()
	p := podWithCgroup(t, berth, "oom")
	cfg := containerConfig("hog", "head -c 200m /dev/zero | tail")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, MemorySwapLimitInBytes: 32 << 20}
	id := p.run(t, cfg)
	st := waitExited(t, berth, id)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("reason %q exit %d, want OOMKilled 137", st.Reason, st.ExitCode)
	}
	if !cgroups.IsV2() {
		return
	}
	eventually(t, time.Minute, func() error {
		all, err := berth.Runtime.ListPodSandboxMetrics(context.Background())
		if err != nil {
			return err
		}
		for _, pm := range all {
			if pm.PodSandboxId != p.id {
				continue
			}
			for _, m := range pm.Metrics {
				// The pod cgroup's own row has container="".
				if m.Name == "container_oom_events_total" && slices.Contains(m.LabelValues, p.cfg.Metadata.Name) && m.LabelValues[0] == "" {
					if m.GetValue().GetValue() < 1 {
						return fmt.Errorf("pod container_oom_events_total = %d", m.GetValue().GetValue())
					}
					return nil
				}
			}
			return fmt.Errorf("no pod-level container_oom_events_total in %d metrics", len(pm.Metrics))
		}
		return fmt.Errorf("no metrics for pod %s", p.id)
	})
}

func TestBindMounts(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "mounts")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "made", "by", "berth")
	cfg := containerConfig("m", "sleep 3600")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rw", HostPath: dir},
		{ContainerPath: "/ro", HostPath: dir, Readonly: true},
		{ContainerPath: "/via-link", HostPath: link, Readonly: true},
		{ContainerPath: "/new", HostPath: missing},
	}
	cfg.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/berth-null", Permissions: "rw"}}
	id := p.run(t, cfg)
	if out := dockerExec(t, id, "cat", "/ro/hello", "/via-link/hello"); out != "from the hostfrom the host" {
		t.Errorf("bind contents = %q", out)
	}
	dockerExec(t, id, "sh", "-c", "echo written > /rw/out")
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); string(data) != "written\n" {
		t.Errorf("write through a rw bind: %q", data)
	}
	if out, err := docker(t, "exec", id, "touch", "/ro/x"); err == nil {
		t.Errorf("read-only bind is writable: %s", out)
	}
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Errorf("missing host path not created as a directory: %v", err)
	}
	if _, err := docker(t, "exec", id, "test", "-c", "/dev/berth-null"); err != nil {
		t.Errorf("device not in the container")
	}
	st := containerStatus(t, berth, id)
	if len(st.Mounts) != 4 || st.Mounts[1].GetContainerPath() != "/ro" || !st.Mounts[1].GetReadonly() {
		t.Errorf("status mounts = %v", st.Mounts)
	}
}

// sharedMount makes dir a mount point with shared propagation, as
// kubelet's directories for propagating volumes are.
func sharedMount(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-rshared", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-R", dir).Run() })
}

func TestMountPropagation(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "propagation")
	dir := t.TempDir()
	sharedMount(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "from-host"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "from-container"), 0o755); err != nil {
		t.Fatal(err)
	}
	slave := containerConfig("slave", "sleep 3600")
	slave.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
	slaveID := p.run(t, slave)
	shared := containerConfig("shared", "sleep 3600")
	shared.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	shared.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	sharedID := p.run(t, shared)

	// Host to container.
	if out, err := exec.Command("mount", "-t", "tmpfs", "host-tmpfs", filepath.Join(dir, "from-host")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(dir, "from-host")).Run() })
	eventually(t, 10*time.Second, func() error {
		if out := dockerExec(t, slaveID, "cat", "/proc/self/mountinfo"); !strings.Contains(out, "/data/from-host") {
			return errorf("the host's new mount did not reach the HOST_TO_CONTAINER container")
		}
		return nil
	})
	// Container to host.
	dockerExec(t, sharedID, "mount", "-t", "tmpfs", "ctr-tmpfs", "/data/from-container")
	t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(dir, "from-container")).Run() })
	eventually(t, 10*time.Second, func() error {
		data, _ := os.ReadFile("/proc/self/mountinfo")
		if !strings.Contains(string(data), filepath.Join(dir, "from-container")) {
			return errorf("the BIDIRECTIONAL container's mount did not reach the host")
		}
		return nil
	})
}
