package cgroups

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolveRuntimeName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "/berth-runtime", want: "/berth-runtime"},
		{in: "/system.slice/berth.service", want: "/system.slice/berth.service"},
		{in: "/runtime//berth/", want: "/runtime/berth"},
		{in: "/system.slice/runtime.slice", want: "/system.slice/runtime.slice"},
		{in: "berth.slice", want: "/berth.slice"},
		{in: "berth-runtime.slice", want: "/berth.slice/berth-runtime.slice"},
		{in: "a-b-c.slice", want: "/a.slice/a-b.slice/a-b-c.slice"},
		{in: "/", err: true},
		{in: "//", err: true},
		{in: "/a/../b", err: true},
		{in: "/a/./b", err: true},
		{in: "-.slice", err: true},
		{in: "-a.slice", err: true},
		{in: "a-.slice", err: true},
		{in: "a--b.slice", err: true},
		{in: ".slice", err: true},
		{in: "a b.slice", err: true},
		{in: "berth-runtime", err: true},
		{in: "system.slice/berth.slice", err: true},
		{in: "", err: true},
	} {
		got, err := ResolveRuntimeName(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ResolveRuntimeName(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestRuntimeMemoryLimit(t *testing.T) {
	page := uint64(os.Getpagesize())
	for total, want := range map[uint64]uint64{
		16 << 30:  16 << 30 / 100 * 70 / page * page,
		100 << 20: 150 << 20, // never below 150 MiB
		0:         150 << 20,
	} {
		if got := RuntimeMemoryLimit(total); got != want {
			t.Errorf("RuntimeMemoryLimit(%d) = %d, want %d", total, got, want)
		}
	}
	if n, err := parseMemTotal([]byte("MemTotal:       8023456 kB\nMemFree: 1 kB\n")); err != nil || n != 8023456<<10 {
		t.Errorf("parseMemTotal = %d, %v", n, err)
	}
	if _, err := parseMemTotal([]byte("MemFree: 1 kB\n")); err == nil {
		t.Errorf("parseMemTotal without MemTotal succeeded")
	}
}

// recordWrites replaces writeFile for the test: every write is recorded,
// and applied as a cgroup filesystem would for the files that matter
// (subtree_control accumulates "+c", cgroup.procs takes one pid per write).
func recordWrites(t *testing.T) *[][2]string {
	var writes [][2]string
	old := writeFile
	writeFile = func(path, value string) error {
		writes = append(writes, [2]string{path, value})
		if filepath.Base(path) == "cgroup.subtree_control" || filepath.Base(path) == "cgroup.procs" {
			cur, _ := os.ReadFile(path)
			value = strings.TrimSpace(string(cur) + " " + strings.TrimPrefix(value, "+"))
		}
		return os.WriteFile(path, []byte(value), 0o644)
	}
	t.Cleanup(func() { writeFile = old })
	return &writes
}

func TestEnsureGroupV1(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu,cpuacct", "memory", "cpuset", "pids", "systemd", "unified"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(root, "cpuset", "cpuset.cpus"), []byte("0-1\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "cpuset", "cpuset.mems"), []byte("0\n"), 0o644)
	// A hybrid host's /proc/self/cgroup: v1 controllers, systemd's named
	// hierarchy and the unified one.
	self := []byte("7:pids:/user.slice\n6:cpuset:/\n5:memory:/user.slice\n4:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n")
	writes := recordWrites(t)

	g, warnings, err := ensureGroup(root, self, "/runtime/berth", 1<<30)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ensureGroup: %v, warnings %v", err, warnings)
	}
	want := []string{
		filepath.Join(root, "pids/runtime/berth"),
		filepath.Join(root, "cpuset/runtime/berth"),
		filepath.Join(root, "memory/runtime/berth"),
		filepath.Join(root, "cpu,cpuacct/runtime/berth"),
	}
	if g.V2 || !slices.Equal(g.Dirs, want) {
		t.Errorf("group = %+v, want v1 dirs %v (not systemd's, not the unified one)", g, want)
	}
	for _, d := range want {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s not made: %v", d, err)
		}
	}
	for _, lvl := range []string{"cpuset/runtime", "cpuset/runtime/berth"} {
		cpus, _ := os.ReadFile(filepath.Join(root, lvl, "cpuset.cpus"))
		mems, _ := os.ReadFile(filepath.Join(root, lvl, "cpuset.mems"))
		if string(cpus) != "0-1" || string(mems) != "0" {
			t.Errorf("%s: cpus %q mems %q, want the root's", lvl, cpus, mems)
		}
	}
	if l, _ := os.ReadFile(filepath.Join(root, "memory/runtime/berth/memory.limit_in_bytes")); string(l) != "1073741824" {
		t.Errorf("memory limit %q", l)
	}
	*writes = nil
	if err := g.Add(4242); err != nil {
		t.Fatal(err)
	}
	if len(*writes) != len(want) {
		t.Errorf("Add wrote %v, want cgroup.procs in each of %v", *writes, want)
	}
	for i, w := range *writes {
		if w[0] != filepath.Join(want[i], "cgroup.procs") || w[1] != "4242" {
			t.Errorf("write %d = %v", i, w)
		}
	}
	// Again: the cgroups exist; nothing fails.
	if _, _, err := ensureGroup(root, self, "/runtime/berth", 1<<30); err != nil {
		t.Errorf("second ensureGroup: %v", err)
	}
}

func TestEnsureGroupV2(t *testing.T) {
	root := t.TempDir()
	_ = os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb pids rdma\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("memory\n"), 0o644)
	// The level below the root exists, with fewer controllers (no io),
	// as a systemd slice would have.
	slice := filepath.Join(root, "berth.slice")
	_ = os.Mkdir(slice, 0o755)
	_ = os.WriteFile(filepath.Join(slice, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644)
	_ = os.WriteFile(filepath.Join(slice, "cgroup.subtree_control"), nil, 0o644)
	writes := recordWrites(t)

	name, err := ResolveRuntimeName("berth-runtime.slice")
	if err != nil {
		t.Fatal(err)
	}
	g, warnings, err := ensureGroup(root, []byte("0::/init.scope\n"), name, 2<<30)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ensureGroup: %v, warnings %v", err, warnings)
	}
	dir := filepath.Join(root, "berth.slice/berth-runtime.slice")
	if !g.V2 || !slices.Equal(g.Dirs, []string{dir}) {
		t.Errorf("group = %+v, want the unified dir %s", g, dir)
	}
	if l, _ := os.ReadFile(filepath.Join(dir, "memory.max")); string(l) != "2147483648" {
		t.Errorf("memory.max %q", l)
	}
	// The root enables what it has and lacks (memory was on); the slice
	// what it has; nothing it does not have.
	var enabled []string
	for _, w := range *writes {
		if filepath.Base(w[0]) == "cgroup.subtree_control" {
			enabled = append(enabled, strings.TrimPrefix(filepath.Dir(w[0]), root)+" "+w[1])
		}
	}
	wantEnabled := []string{" +cpu", " +io", " +pids", "/berth.slice +cpu", "/berth.slice +memory", "/berth.slice +pids"}
	if !slices.Equal(enabled, wantEnabled) {
		t.Errorf("controllers enabled: %q, want %q", enabled, wantEnabled)
	}
	*writes = nil
	if err := g.Add(77); err != nil {
		t.Fatal(err)
	}
	if len(*writes) != 1 || (*writes)[0] != [2]string{filepath.Join(dir, "cgroup.procs"), "77"} {
		t.Errorf("Add wrote %v", *writes)
	}
}

// TestEnsureGroupV2WarnsWhenAControllerIsRefused: a parent that has
// processes of its own cannot enable controllers for its children; the
// group is still made, with a warning.
func TestEnsureGroupV2WarnsWhenAControllerIsRefused(t *testing.T) {
	root := t.TempDir()
	_ = os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory pids\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("memory pids\n"), 0o644)
	busy := filepath.Join(root, "busy")
	_ = os.Mkdir(busy, 0o755)
	_ = os.WriteFile(filepath.Join(busy, "cgroup.controllers"), []byte("memory pids\n"), 0o644)
	// Not writable, as EBUSY would refuse it.
	_ = os.Mkdir(filepath.Join(busy, "cgroup.subtree_control"), 0o755)
	g, warnings, err := ensureGroup(root, nil, "/busy/runtime", 0)
	if err != nil || g == nil {
		t.Fatalf("ensureGroup: %v", err)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0].Error(), "memory") {
		t.Errorf("warnings = %v, want one per refused controller", warnings)
	}
}
