package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The memory limit cri-dockerd gives the runtime's cgroup: 70% of the
// machine's memory, at least 150 MiB. It is a guard against a leaking
// daemon taking the node down, not a budget.
const (
	runtimeMemoryPercent = 70
	minRuntimeMemory     = 150 << 20
)

// RuntimeMemoryLimit is the memory limit of the runtime's cgroup on a
// machine with memTotal bytes of memory, in whole pages: the kernel rounds
// a limit down to them, and the limit set is then the limit read back.
func RuntimeMemoryLimit(memTotal uint64) uint64 {
	page := uint64(os.Getpagesize())
	return max(memTotal/100*runtimeMemoryPercent, minRuntimeMemory) / page * page
}

// ResolveRuntimeName turns --runtime-cgroups into the cgroup's path below
// each hierarchy's root. An absolute path is taken as it is, under either
// cgroup driver, as kubelet and cri-dockerd take it (/berth-runtime,
// /system.slice/berth.service). A systemd slice name (berth-runtime.slice)
// becomes the path systemd gives that slice (/berth.slice/berth-runtime.slice),
// for nodes whose cgroup driver is systemd.
func ResolveRuntimeName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		if strings.Contains(name, "\x00") || strings.Contains(name, "\n") {
			return "", fmt.Errorf("%q is not a cgroup path", name)
		}
		for _, part := range strings.Split(name, "/") {
			if part == ".." || part == "." {
				return "", fmt.Errorf("%q: a cgroup path has no %q", name, part)
			}
		}
		p := filepath.Clean(name)
		if p == "/" {
			return "", fmt.Errorf("%q is the root cgroup, which every process starts in: name a cgroup of its own", name)
		}
		return p, nil
	}
	if strings.Contains(name, "/") || !strings.HasSuffix(name, ".slice") {
		return "", fmt.Errorf("%q is neither an absolute cgroup path (/berth-runtime) nor a systemd slice name (berth-runtime.slice)", name)
	}
	return slicePath(name)
}

// slicePath is systemd's path of a slice: each dash-separated prefix is a
// parent slice (a-b-c.slice lives in /a.slice/a-b.slice/a-b-c.slice).
func slicePath(name string) (string, error) {
	base := strings.TrimSuffix(name, ".slice")
	if base == "-" {
		return "", fmt.Errorf("%q is the root slice: name a slice of its own", name)
	}
	if base == "" || strings.HasPrefix(base, "-") || strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", fmt.Errorf("%q is not a valid systemd slice name", name)
	}
	for _, r := range base {
		if !(r == '-' || r == '_' || r == '.' || r == ':' || r == '\\' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "", fmt.Errorf("%q is not a valid systemd slice name", name)
		}
	}
	var path, prefix string
	for _, part := range strings.Split(base, "-") {
		if prefix != "" {
			prefix += "-"
		}
		prefix += part
		path += "/" + prefix + ".slice"
	}
	return path, nil
}

// writeFile writes a cgroup file; tests replace it to see the writes a
// cgroup filesystem would act on.
var writeFile = write

// Group is a cgroup Berth made (or found) in every hierarchy that has
// resource controllers, to run processes in.
type Group struct {
	// Name is the cgroup's path below each hierarchy's root.
	Name string
	// V2 is true on a unified (cgroup v2 only) host.
	V2 bool
	// Dirs are the cgroup's directory in each hierarchy: one per v1
	// controller mount, or the one unified directory.
	Dirs []string
}

// EnsureGroup makes the cgroup name (as ResolveRuntimeName gives it) with
// memoryLimit bytes of memory (0: none), in each hierarchy with resource
// controllers that this process is in: on cgroup v1 every controller mount
// (systemd's own name=systemd hierarchy is left alone, so systemd keeps
// tracking the unit the process belongs to), on cgroup v2 the unified
// hierarchy, with the memory, cpu, io and pids controllers enabled on the
// way down. Problems that leave the group usable but incomplete (a
// controller that cannot be enabled, the limit not set) are returned as
// warnings; an error means processes cannot be put in it.
func EnsureGroup(name string, memoryLimit uint64) (*Group, []error, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, nil, err
	}
	return ensureGroup(Root, self, name, memoryLimit)
}

func ensureGroup(root string, self []byte, name string, memoryLimit uint64) (*Group, []error, error) {
	g := &Group{Name: name, V2: isV2(root)}
	if g.V2 {
		warnings, err := ensureV2(root, name, memoryLimit)
		if err != nil {
			return nil, warnings, err
		}
		g.Dirs = []string{filepath.Join(root, name)}
		return g, warnings, nil
	}
	var warnings []error
	for _, h := range v1Hierarchies(root, self) {
		dir, err := mkdirV1(h, name)
		if err != nil {
			return nil, warnings, err
		}
		g.Dirs = append(g.Dirs, dir)
		if memoryLimit > 0 && hasController(h, "memory") {
			if err := writeFile(filepath.Join(dir, "memory.limit_in_bytes"), strconv.FormatUint(memoryLimit, 10)); err != nil {
				warnings = append(warnings, fmt.Errorf("memory limit: %w", err))
			}
		}
	}
	if len(g.Dirs) == 0 {
		return nil, warnings, fmt.Errorf("no cgroup v1 controller is mounted under %s", root)
	}
	return g, warnings, nil
}

// Add moves process pid, with all its threads, into the group in every
// hierarchy. Moving a process into the cgroup it is in already is a no-op.
func (g *Group) Add(pid int) error {
	var errs []error
	for _, dir := range g.Dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Contains reports whether process pid is in the group in every hierarchy
// the group is in (false for a process that is gone).
func (g *Group) Contains(pid int) bool {
	paths, err := Paths(pid)
	if err != nil {
		return false
	}
	in := map[string]bool{}
	for _, p := range paths {
		in[p] = true
	}
	for _, dir := range g.Dirs {
		if !in[dir] {
			return false
		}
	}
	return true
}

// isV2 reports whether root is a unified (cgroup v2 only) mount.
func isV2(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

// v1Hierarchies returns the mount directory of each cgroup v1 hierarchy
// with resource controllers that a process with /proc/pid/cgroup self is
// in: named hierarchies (name=systemd) and a hybrid host's unified one are
// left out.
func v1Hierarchies(root string, self []byte) []string {
	var dirs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		ctrls := parts[1]
		first, _, _ := strings.Cut(ctrls, ",")
		if strings.HasPrefix(first, "name=") {
			continue
		}
		dir := filepath.Join(root, mountDir(root, ctrls, first))
		if !seen[dir] {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// hasController reports whether the v1 hierarchy mounted at dir holds
// controller c (a mount may hold several: cpu,cpuacct).
func hasController(dir, c string) bool {
	for _, name := range strings.Split(filepath.Base(dir), ",") {
		if name == c {
			return true
		}
	}
	return false
}

// mkdirV1 makes name in the v1 hierarchy mounted at h, one level at a time
// so that cpuset levels get their parent's CPUs and memory nodes: a cpuset
// cgroup starts empty, and no process can join an empty one.
func mkdirV1(h, name string) (string, error) {
	dir := h
	for _, part := range strings.Split(strings.Trim(name, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		if hasController(h, "cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if err := inherit(parent, dir, f); err != nil {
					return "", err
				}
			}
		}
	}
	return dir, nil
}

// inherit copies file f from parent to dir when dir's is empty.
func inherit(parent, dir, f string) error {
	cur, err := os.ReadFile(filepath.Join(dir, f))
	if err == nil && len(bytes.TrimSpace(cur)) > 0 {
		return nil
	}
	val, err := os.ReadFile(filepath.Join(parent, f))
	if err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(parent, f), err)
	}
	return writeFile(filepath.Join(dir, f), strings.TrimSpace(string(val)))
}

// v2Controllers are the controllers the runtime's cgroup gets on cgroup v2,
// those whose usage kubelet reports for the runtime (and memory for the
// limit).
var v2Controllers = []string{"cpu", "io", "memory", "pids"}

// ensureV2 makes name in the unified hierarchy at root. Each level's
// parent first gets the controllers (those it has) enabled for its
// children, as the no-internal-processes rule allows: the root always, a
// parent with processes of its own not (a warning; the group is made
// without them).
func ensureV2(root, name string, memoryLimit uint64) ([]error, error) {
	var warnings []error
	dir := root
	for _, part := range strings.Split(strings.Trim(name, "/"), "/") {
		warnings = append(warnings, enableControllers(dir)...)
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return warnings, fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
	}
	if memoryLimit > 0 {
		if err := writeFile(filepath.Join(dir, "memory.max"), strconv.FormatUint(memoryLimit, 10)); err != nil {
			warnings = append(warnings, fmt.Errorf("memory limit: %w", err))
		}
	}
	return warnings, nil
}

// enableControllers enables, for dir's children, the v2Controllers dir has
// that are not enabled yet.
func enableControllers(dir string) []error {
	have, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return []error{fmt.Errorf("reading the controllers of %s: %w", dir, err)}
	}
	enabled, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	on := strings.Fields(string(enabled))
	var warnings []error
	for _, c := range v2Controllers {
		if !contains(strings.Fields(string(have)), c) || contains(on, c) {
			continue
		}
		// One at a time: one refused controller must not keep the others off.
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
			warnings = append(warnings, fmt.Errorf("enabling the %s controller: %w", c, err))
		}
	}
	return warnings
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// MemTotal returns the machine's memory in bytes, from /proc/meminfo.
func MemTotal() (uint64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemTotal(data)
}

func parseMemTotal(data []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", f[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal")
}
