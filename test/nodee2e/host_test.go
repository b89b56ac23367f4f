package nodee2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/test/framework"
)

// kubeletSysctls are the kernel settings kubelet rewrites at start-up
// (setupKernelTunables in pkg/kubelet/cm).
var kubeletSysctls = []string{
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
}

// kubeletDirs are the host directories the suite's kubelet writes to: its
// root dir is fixed (/var/lib/kubelet), pods' logs go to /var/log/pods and
// their symlinks to /var/log/containers. Those that did not exist before the
// run are removed after it; in those that did, what the run added is.
var kubeletDirs = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers"}

// guardHost records the sysctls and directories kubelet changes and puts
// them back when t ends, and creates the kubelet and runtime cgroups
// (removed after the run).
func guardHost(t *testing.T) {
	t.Helper()
	sysctls := map[string]string{}
	for _, name := range kubeletSysctls {
		data, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			t.Fatalf("reading sysctl %s: %v", name, err)
		}
		sysctls[name] = strings.TrimSpace(string(data))
	}
	before := map[string]map[string]bool{} // dir -> entries before; nil: dir absent
	for _, dir := range kubeletDirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, e := range entries {
			names[e.Name()] = true
		}
		before[dir] = names
	}
	// kubelet makes its pod cgroups below cgroupRoot (/): /kubepods in
	// each hierarchy, removed after the run when it was not there before.
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	var kubepods []string
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h, "kubepods")); errors.Is(err, os.ErrNotExist) {
			kubepods = append(kubepods, filepath.Join(h, "kubepods"))
		}
	}
	var created []string
	for _, cg := range []string{kubeletCgroup(), runtimeCgroup()} {
		made, err := createCgroup(cg)
		created = append(created, made...)
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for name, v := range sysctls {
			if err := os.WriteFile(sysctlPath(name), []byte(v), 0o644); err != nil {
				t.Errorf("restoring sysctl %s=%s: %v", name, v, err)
			}
		}
		for _, dir := range kubeletDirs {
			names, existed := before[dir]
			unmountUnder(dir)
			if !existed {
				if err := os.RemoveAll(dir); err != nil {
					t.Errorf("removing %s: %v", dir, err)
				}
				continue
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !names[e.Name()] {
					if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
						t.Errorf("removing %s: %v", filepath.Join(dir, e.Name()), err)
					}
				}
			}
		}
		for _, root := range kubepods {
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					created = append(created, p)
				}
				return nil
			})
		}
		// Deepest first; a cgroup still holding a process (none should)
		// fails to go, and says so.
		sort.Slice(created, func(i, j int) bool { return len(created[i]) > len(created[j]) })
		for _, dir := range created {
			removeCgroup(t, dir)
		}
	})
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// cgroupBase is where this test's cgroups go: below the process's own
// memory cgroup when it has one (a session's memory limit keeps covering
// kubelet and the runtime), else at the root. The same path is used in
// every hierarchy: kubelet names a system container by one path.
func cgroupBase() string {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && f[1] == "memory" && f[2] != "/" {
			return f[2]
		}
	}
	return ""
}

// kubeletCgroup and runtimeCgroup are kubelet's --kubelet-cgroups and
// --runtime-cgroups: the Summary API reports them as the "kubelet" and
// "runtime" system containers.
func kubeletCgroup() string { return cgroupBase() + "/berth-node-e2e-kubelet" }
func runtimeCgroup() string { return cgroupBase() + "/berth-node-e2e-runtime" }

// writeKubeletLauncher writes path, the kubelet the suite starts: a script
// that joins the kubelet cgroup, then runs kubelet. On a node, systemd
// puts kubelet.service's process there. kubelet's own move into
// --kubelet-cgroups fails on this machine ("failed to find pid namespace
// of init process": /proc/1/ns cannot be read here), and the Summary API's
// "kubelet" system container would then be an empty cgroup.
func writeKubeletLauncher(path, kubelet string) error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "echo $$ > '%s'\n", filepath.Join(h, kubeletCgroup(), "cgroup.procs"))
	}
	fmt.Fprintf(&b, "exec '%s' \"$@\"\n", kubelet)
	return os.WriteFile(path, []byte(b.String()), 0o755)
}

// hierarchies are the mounted cgroup v1 hierarchies (symlinks such as
// cpu -> cpu,cpuacct skipped) and their controllers.
func hierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "unified" {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs, nil
}

// createCgroup creates path in every hierarchy and returns the directories
// it created (parents too). A cpuset cgroup takes its parent's cpus and
// mems, without which it cannot hold a process.
func createCgroup(path string) ([]string, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	var made []string
	for _, h := range hs {
		dir := h
		for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if _, err := os.Stat(dir); err == nil {
				continue
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				return made, err
			}
			made = append(made, dir)
			if filepath.Base(h) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return made, err
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return made, err
					}
				}
			}
		}
	}
	return made, nil
}

// moveToCgroup moves pid and its descendants (dockerd's containerd) into
// path in every hierarchy.
func moveToCgroup(path string, pid int) error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	for _, p := range append([]int{pid}, descendants(pid)...) {
		for _, h := range hs {
			procs := filepath.Join(h, path, "cgroup.procs")
			if err := os.WriteFile(procs, []byte(strconv.Itoa(p)), 0o644); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("moving %d into %s: %w", p, procs, err)
			}
		}
	}
	return nil
}

// descendants lists pid's children, grandchildren and so on.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// removeCgroup removes a cgroup directory, retrying while its last
// processes exit.
func removeCgroup(t *testing.T, dir string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return
		}
		if time.Now().After(deadline) {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			t.Errorf("removing cgroup %s: %v (processes: %q)", dir, err, strings.Fields(string(procs)))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first (what
// kubelet left mounted: volumes of pods it did not tear down).
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// sweepPods removes every pod sandbox Berth knows, for a run that ended
// before its pods were deleted: the private daemon holds only this run's
// containers, and removing them through Berth also releases their network.
func sweepPods(t *testing.T, b *framework.Berth) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sandboxes, err := b.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Logf("sweeping pods: %v", err)
		return
	}
	if len(sandboxes) > 0 {
		fmt.Printf("node-e2e: removing %d pod sandboxes left after the run\n", len(sandboxes))
	}
	for _, sb := range sandboxes {
		if err := b.Runtime.StopPodSandbox(ctx, sb.Id); err != nil {
			t.Logf("sweeping pod %s: %v", sb.Metadata.GetName(), err)
		}
		if err := b.Runtime.RemovePodSandbox(ctx, sb.Id); err != nil {
			t.Logf("sweeping pod %s: %v", sb.Metadata.GetName(), err)
		}
	}
}
