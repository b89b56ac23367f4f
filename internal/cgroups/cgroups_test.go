package cgroups

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu,cpuacct", "memory", "systemd"} {
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	data := []byte("12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n")
	got := parse(data, root)
	for k, want := range map[string]string{
		"cpu":     filepath.Join(root, "cpu,cpuacct/docker/abc"),
		"cpuacct": filepath.Join(root, "cpu,cpuacct/docker/abc"),
		"memory":  filepath.Join(root, "memory/docker/abc"),
		"systemd": filepath.Join(root, "systemd/docker/abc"),
		"":        filepath.Join(root, "docker/abc"),
	} {
		if got[k] != want {
			t.Errorf("%q: got %q, want %q", k, got[k], want)
		}
	}
}

func TestPathsOfThisProcess(t *testing.T) {
	paths, err := Paths(os.Getpid())
	if err != nil || len(paths) == 0 {
		t.Fatalf("Paths = %v, %v", paths, err)
	}
	if dir, ok := paths["memory"]; ok {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("memory cgroup dir %s: %v", dir, err)
		}
	}
}

func TestParseHybridUnifiedPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"memory", "unified"} {
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	// A hybrid host: v1 controllers, the unified hierarchy at root/unified.
	if err := os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := parse([]byte("4:memory:/docker/abc\n0::/docker/abc\n"), root)
	if want := filepath.Join(root, "unified/docker/abc"); got[""] != want {
		t.Errorf("unified path %q, want %q", got[""], want)
	}
	if want := filepath.Join(root, "memory/docker/abc"); got["memory"] != want {
		t.Errorf("memory path %q, want %q", got["memory"], want)
	}
}

func TestParentAndRelative(t *testing.T) {
	p := Parent(map[string]string{"memory": "/sys/fs/cgroup/memory/kubepods/pod1/abc"})
	if p["memory"] != "/sys/fs/cgroup/memory/kubepods/pod1" {
		t.Errorf("Parent = %v", p)
	}
	if IsV2() {
		if got := Relative(filepath.Join(Root, "kubepods/pod1")); got != "/kubepods/pod1" {
			t.Errorf("Relative = %q", got)
		}
	} else if got := Relative(filepath.Join(Root, "memory/kubepods/pod1")); got != "/kubepods/pod1" {
		t.Errorf("Relative = %q", got)
	}
}
