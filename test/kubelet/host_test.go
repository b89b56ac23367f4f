package kubelet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// kubeletSysctls are the kernel settings kubelet rewrites at start-up
// (setupKernelTunables in pkg/kubelet/cm) unless protectKernelDefaults is
// set, in which case it refuses to start when they differ.
var kubeletSysctls = []string{
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
}

// kubeletHostDirs are the host paths kubelet writes to whatever its flags
// say: /var/log/containers (a symlink per container) and
// /var/lib/kubelet/device-plugins (the device plugin registration socket
// and its checkpoint). The rest are where a default kubelet would write;
// the suite moves each elsewhere and checks that nothing appeared there.
var kubeletHostDirs = []string{
	"/var/log/containers",
	"/var/lib/kubelet",
	"/var/log/pods",
	"/etc/kubernetes",
	"/var/run/kubernetes",
	"/usr/libexec/kubernetes",
}

// deviceManagerFiles are what kubelet's device manager leaves in
// /var/lib/kubelet/device-plugins.
var deviceManagerFiles = []string{"kubelet.sock", "kubelet_internal_checkpoint"}

// iptablesTables are the tables kubelet touches (the KUBE-IPTABLES-HINT
// chain in mangle, KUBE-KUBELET-CANARY in all three).
var iptablesTables = []string{"mangle", "nat", "filter"}

// hostGuard records the host state a kubelet run may change and puts it
// back: sysctls, iptables chains, the cgroup hierarchy kubelet creates under
// its cgroupRoot, and directories.
type hostGuard struct {
	sysctls    map[string]string
	chains     map[string]map[string]bool // "iptables"/"ip6tables" -> "table/chain" existing before
	dirsBefore map[string]bool            // path -> existed before
	cgroupRoot string                     // e.g. /berth-kubelet-1a2b3c
	cgroupDirs []string                   // cgroupRoot in each hierarchy, created by the guard
	runDir     string                     // the run's directory: kubelet mounts its root dir inside
	restored   bool
}

// guardHost snapshots the host and creates cgroupRoot in every cgroup
// hierarchy (kubelet refuses a cgroupRoot that does not exist). Restore
// runs at the latest when t ends. runDir is the run's own directory, which
// holds kubelet's root dir.
func guardHost(t testing.TB, cgroupRoot, runDir string) *hostGuard {
	t.Helper()
	g := &hostGuard{
		sysctls:    map[string]string{},
		chains:     map[string]map[string]bool{},
		dirsBefore: map[string]bool{},
		cgroupRoot: cgroupRoot,
		runDir:     runDir,
	}
	for _, name := range kubeletSysctls {
		v, err := readSysctl(name)
		if err != nil {
			t.Fatalf("reading sysctl %s: %v", name, err)
		}
		g.sysctls[name] = v
	}
	for _, tool := range iptablesTools(t) {
		set, err := listChains(tool)
		if err != nil {
			t.Fatal(err)
		}
		g.chains[tool] = set
	}
	for _, dir := range kubeletHostDirs {
		_, err := os.Lstat(dir)
		g.dirsBefore[dir] = err == nil
	}
	t.Cleanup(func() {
		if !g.restored {
			for _, err := range g.Restore() {
				t.Errorf("restoring the host: %v", err)
			}
		}
	})
	if err := g.createCgroupRoot(); err != nil {
		t.Fatal(err)
	}
	return g
}

// iptablesTools are the iptables front ends present (kubelet sets up both
// families when it can).
func iptablesTools(t testing.TB) []string {
	var tools []string
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err == nil {
			tools = append(tools, tool)
		}
	}
	if len(tools) == 0 {
		t.Fatal("no iptables on PATH (hack/setup.sh installs it)")
	}
	return tools
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	return strings.TrimSpace(string(b)), err
}

// listChains returns "table/chain" for every chain of the tables kubelet
// touches.
func listChains(tool string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, table := range iptablesTables {
		out, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
		if err != nil {
			return nil, fmt.Errorf("%s -t %s -S: %v", tool, table, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
				set[table+"/"+f[1]] = true
			}
		}
	}
	return set, nil
}

// cgroupHierarchies returns the mount points of the cgroup hierarchies:
// on cgroup v1 each controller's, name=systemd's and, on a hybrid host, the
// unified one (runc creates a container's cgroup there too); on cgroup v2
// the one unified mount, with v2 true.
func cgroupHierarchies() (mounts []string, v2 bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var v1, unified []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mountinfo: id parent major:minor root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		switch fields[sep+1] {
		case "cgroup":
			v1 = append(v1, fields[4])
		case "cgroup2":
			unified = append(unified, fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, err
	}
	switch {
	case len(v1) > 0:
		return append(v1, unified...), false, nil
	case len(unified) > 0:
		return unified[:1], true, nil
	}
	return nil, false, errors.New("no cgroup filesystem mounted")
}

// createCgroupRoot makes g.cgroupRoot in every hierarchy. A new cpuset
// cgroup starts with no CPUs and no memory nodes; it gets its parent's, as
// the cgroups kubelet creates under it will copy them.
func (g *hostGuard) createCgroupRoot() error {
	hs, _, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h, g.cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		g.cgroupDirs = append(g.cgroupDirs, dir)
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(h, file))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, file), parent, 0o644); err != nil {
				return fmt.Errorf("initialising %s in %s: %w", file, dir, err)
			}
		}
	}
	return nil
}

// Restore puts back what kubelet changed and reports, as errors, what could
// not be put back. It runs after kubelet has stopped and the pods are gone;
// it is idempotent.
func (g *hostGuard) Restore() []error {
	g.restored = true
	errs := g.restoreSysctls()
	errs = append(errs, g.restoreIPTables()...)
	errs = append(errs, g.unmount()...)
	errs = append(errs, g.removeCgroups()...)
	errs = append(errs, g.removeDirs()...)
	return errs
}

// restoreSysctls writes back every sysctl that changed.
func (g *hostGuard) restoreSysctls() []error {
	var errs []error
	for _, name := range kubeletSysctls {
		want := g.sysctls[name]
		got, err := readSysctl(name)
		if err == nil && got == want {
			continue
		}
		if err := os.WriteFile(sysctlPath(name), []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s is %s, restoring %s: %w", name, got, want, err))
		}
	}
	return errs
}

// changedSysctls lists the sysctls that differ from the snapshot.
func (g *hostGuard) changedSysctls() []string {
	var changed []string
	for _, name := range kubeletSysctls {
		if got, _ := readSysctl(name); got != g.sysctls[name] {
			changed = append(changed, fmt.Sprintf("%s=%s (was %s)", name, got, g.sysctls[name]))
		}
	}
	return changed
}

// newChains lists the KUBE-* chains that did not exist before, as
// "tool table/chain".
func (g *hostGuard) newChains() ([]string, error) {
	var out []string
	for tool, before := range g.chains {
		now, err := listChains(tool)
		if err != nil {
			return nil, err
		}
		for tc := range now {
			if !before[tc] && strings.HasPrefix(tc[strings.Index(tc, "/")+1:], "KUBE-") {
				out = append(out, tool+" "+tc)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// restoreIPTables deletes the KUBE-* chains kubelet created, with every
// rule that jumps to them.
func (g *hostGuard) restoreIPTables() []error {
	chains, err := g.newChains()
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, tc := range chains {
		tool, rest, _ := strings.Cut(tc, " ")
		table, chain, _ := strings.Cut(rest, "/")
		out, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" || !strings.Contains(line, "-j "+chain) {
				continue
			}
			f[0] = "-D"
			_ = exec.Command(tool, append([]string{"-w", "-t", table}, f...)...).Run()
		}
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command(tool, "-w", "-t", table, op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s %s %s: %v: %s", tool, table, op, chain, err, out))
			}
		}
	}
	return errs
}

// leftCgroups lists the cgroups under cgroupRoot, deepest first.
func (g *hostGuard) leftCgroups() []string {
	var dirs []string
	for _, root := range g.cgroupDirs {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// removeCgroups removes cgroupRoot and everything kubelet and Docker made
// under it. A cgroup that still holds a process cannot be removed: that is
// a leak, reported.
func (g *hostGuard) removeCgroups() []error {
	var errs []error
	for _, dir := range g.leftCgroups() {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			errs = append(errs, fmt.Errorf("removing cgroup %s: %v (processes: %q)", dir, err, strings.Fields(string(procs))))
		}
	}
	return errs
}

// createdDirs lists what exists now of the host directories that did not
// exist before.
func (g *hostGuard) createdDirs() []string {
	var out []string
	for _, dir := range kubeletHostDirs {
		if g.dirsBefore[dir] {
			continue
		}
		if _, err := os.Lstat(dir); err == nil {
			out = append(out, dir)
		}
	}
	return out
}

// removeDirs removes the host directories kubelet created, provided they
// hold nothing but what kubelet itself leaves behind by design (the device
// manager's socket and checkpoint); anything else in them — a container's
// log symlink, say — is a leak, reported and removed.
func (g *hostGuard) removeDirs() []error {
	var errs []error
	for _, dir := range g.createdDirs() {
		if dir == "/var/lib/kubelet" {
			dp := filepath.Join(dir, "device-plugins")
			for _, f := range deviceManagerFiles {
				_ = os.Remove(filepath.Join(dp, f))
			}
			_ = syscall.Rmdir(dp)
		}
		var left []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && p != dir {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			errs = append(errs, fmt.Errorf("%s (created by kubelet) still holds %v", dir, left))
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// leftMounts lists the mount points under the run's directory, deepest
// first. kubelet bind-mounts its root dir onto itself to make it a shared
// mount, and leaves it mounted when it exits.
func (g *hostGuard) leftMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Mount points are octal-escaped; the run's directory has no
		// characters that need it.
		if mp := fields[4]; mp == g.runDir || strings.HasPrefix(mp, g.runDir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts, sc.Err()
}

// unmount unmounts what kubelet left mounted under the run's directory.
func (g *hostGuard) unmount() []error {
	mounts, err := g.leftMounts()
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errs
}
