package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

// procCgroups reads /proc/pid/cgroup: the cgroup of each hierarchy, by its
// controllers ("memory", "cpu,cpuacct", "name=systemd", "" for the unified).
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("reading the cgroups of %d: %v", pid, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out
}

// inRuntimeCgroup says why process pid is not in cgroup name in every
// hierarchy with resource controllers (cgroup v1), or in the unified one
// (v2); "" when it is. Named hierarchies (systemd's) are not Berth's to
// change.
func inRuntimeCgroup(t *testing.T, pid int, name string) string {
	t.Helper()
	var wrong []string
	for ctrls, path := range procCgroups(t, pid) {
		resource := ctrls != "" && !strings.HasPrefix(ctrls, "name=")
		if (resource || cgroups.IsV2() && ctrls == "") && path != name {
			wrong = append(wrong, fmt.Sprintf("%s:%s", ctrls, path))
		}
	}
	if len(wrong) > 0 {
		return fmt.Sprintf("pid %d is in %v, not %s", pid, wrong, name)
	}
	return ""
}

// childNamed returns the pid of a child of parent whose comm is name.
func childNamed(parent int, name string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		comm := s[strings.IndexByte(s, '(')+1 : i]
		if len(f) > 1 && f[1] == strconv.Itoa(parent) && comm == name {
			return pid
		}
	}
	return 0
}

// TestRuntimeCgroups: --runtime-cgroups makes the cgroup with cri-dockerd's
// memory limit and runs the runtime in it: Berth at once, and the Docker
// daemon it talks to (dockerd and its containerd) as soon as Docker
// answers, and again after Docker restarts (new processes). A private
// daemon, so the shared ones stay where they are.
func TestRuntimeCgroups(t *testing.T) {
	t.Parallel()
	name := "/berth-e2e-" + randomSuffix()
	// Registered first, so it runs last: after Berth and Docker stopped.
	t.Cleanup(func() { removeRuntimeCgroup(t, name) })
	d := framework.StartDockerd(t, "")
	self := procCgroups(t, os.Getpid())
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", d.Host, "--runtime-cgroups", name}})

	if why := inRuntimeCgroup(t, b.Pid(), name); why != "" {
		t.Errorf("berth: %s", why)
	}
	if got, want := procCgroups(t, b.Pid())["name=systemd"], self["name=systemd"]; got != want {
		t.Errorf("berth's name=systemd cgroup = %q, want its parent's %q: systemd's hierarchy is not Berth's", got, want)
	}
	dockerInCgroup := func() error {
		if why := inRuntimeCgroup(t, d.Pid(), name); why != "" {
			return fmt.Errorf("dockerd: %s", why)
		}
		containerd := childNamed(d.Pid(), "containerd")
		if containerd == 0 {
			return fmt.Errorf("dockerd %d has no containerd child yet", d.Pid())
		}
		if why := inRuntimeCgroup(t, containerd, name); why != "" {
			return fmt.Errorf("containerd: %s", why)
		}
		return nil
	}
	eventually(t, time.Minute, dockerInCgroup)

	total, err := cgroups.MemTotal()
	if err != nil {
		t.Fatal(err)
	}
	limitFile := filepath.Join(cgroups.Root, "memory", name, "memory.limit_in_bytes")
	if cgroups.IsV2() {
		limitFile = filepath.Join(cgroups.Root, name, "memory.max")
	}
	if got, _ := os.ReadFile(limitFile); strings.TrimSpace(string(got)) != strconv.FormatUint(cgroups.RuntimeMemoryLimit(total), 10) {
		t.Errorf("%s = %q, want 70%% of %d bytes", limitFile, got, total)
	}

	// A restarted Docker is a new dockerd, put back once Berth sees
	// Docker again.
	old := d.Pid()
	d.Stop(t)
	d.Start(t)
	if d.Pid() == old {
		t.Fatalf("dockerd kept pid %d across a restart", old)
	}
	eventually(t, time.Minute, dockerInCgroup)
	for _, want := range []string{"running in the runtime cgroup", "process=dockerd", "process=containerd"} {
		if !strings.Contains(b.Log(), want) {
			t.Errorf("berth's log lacks %q", want)
		}
	}
}

// removeRuntimeCgroup removes a test's runtime cgroup from every hierarchy
// once its processes are gone.
func removeRuntimeCgroup(t *testing.T, name string) {
	dirs, _ := filepath.Glob(filepath.Join(cgroups.Root, "*", name))
	if d := filepath.Join(cgroups.Root, name); cgroups.IsV2() {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		var err error
		// A process that just exited can keep its cgroup busy a moment.
		for range 50 {
			if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !os.IsNotExist(err) {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			t.Errorf("removing %s: %v (processes: %q)", dir, err, procs)
		}
	}
}

// TestIgnoredCompatFlagsWarnAtStartup: --hairpin-mode and --ipv6-dual-stack
// from a cri-dockerd unit start Berth, and each gets one warning saying it
// has no effect and what decides instead; at their defaults, none.
func TestIgnoredCompatFlagsWarnAtStartup(t *testing.T) {
	t.Parallel()
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(), "--hairpin-mode=promiscuous-bridge", "--ipv6-dual-stack")})
	log := b.Log()
	for _, flag := range []string{"--hairpin-mode=promiscuous-bridge", "--ipv6-dual-stack=true"} {
		n := 0
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "has no effect") && strings.Contains(line, flag) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("berth warned about %s %d times, want once", flag, n)
		}
	}
	if !strings.Contains(log, `hairpinMode`) || !strings.Contains(log, "IPAM") {
		t.Errorf("the warnings do not say what decides instead")
	}
	quiet := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(), "--hairpin-mode=hairpin-veth", "--ipv6-dual-stack=false")})
	if strings.Contains(quiet.Log(), "has no effect") {
		t.Errorf("defaults warned: %s", quiet.Log())
	}
}
