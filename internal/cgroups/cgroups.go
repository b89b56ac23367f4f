// Package cgroups finds a process's cgroups (v1 and v2) and writes the few
// limits Docker's API cannot express (hugetlb, cgroup v2 "unified" keys).
package cgroups

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Root is where the cgroup filesystems are mounted.
var Root = "/sys/fs/cgroup"

// Paths returns the cgroup directories of process pid: by controller name
// on cgroup v1 ("memory", "cpu", …), and under the key "" for the unified
// (v2) hierarchy — on a hybrid host (v1 controllers, the unified hierarchy
// mounted at <Root>/unified) that is where PSI files live.
func Paths(pid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	return parse(data, Root), nil
}

func parse(data []byte, root string) map[string]string {
	out := map[string]string{}
	unified := unifiedRoot(root)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, path := parts[1], parts[2]
		if ctrls == "" {
			out[""] = filepath.Join(unified, path)
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			c = strings.TrimPrefix(c, "name=")
			// A controller's mount may be shared ("cpu,cpuacct"); find the
			// directory it is mounted at.
			out[c] = filepath.Join(root, mountDir(root, ctrls, c), path)
		}
	}
	return out
}

// mountDir returns the directory under root that holds controller c, which
// /proc/pid/cgroup lists as part of ctrls.
func mountDir(root, ctrls, c string) string {
	for _, cand := range []string{ctrls, c} {
		if fi, err := os.Stat(filepath.Join(root, cand)); err == nil && fi.IsDir() {
			return cand
		}
	}
	return c
}

// unifiedRoot is where the unified hierarchy is mounted: root itself on a
// cgroup v2 host, root/unified on a hybrid one.
func unifiedRoot(root string) string {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return root
	}
	if _, err := os.Stat(filepath.Join(root, "unified", "cgroup.controllers")); err == nil {
		return filepath.Join(root, "unified")
	}
	return root
}

// Parent returns the parent directory of each of paths: the pod-level
// cgroup when paths are a pod's pause container's (under both drivers the
// container's cgroup is a child of its cgroup parent).
func Parent(paths map[string]string) map[string]string {
	out := make(map[string]string, len(paths))
	for k, v := range paths {
		out[k] = filepath.Dir(v)
	}
	return out
}

// Relative returns dir relative to the hierarchy it is in, with a leading
// "/": the cgroup name cAdvisor uses as a container's id
// ("/kubepods/besteffort/pod…/<id>").
func Relative(dir string) string {
	rel, err := filepath.Rel(Root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return dir
	}
	if rel == "." {
		return "/"
	}
	// Strip the controller (or "unified") directory.
	if i := strings.IndexByte(rel, '/'); i >= 0 && !IsV2() {
		return rel[i:]
	}
	if IsV2() {
		return "/" + rel
	}
	return "/"
}

// IsV2 reports whether the host uses the unified hierarchy only.
func IsV2() bool {
	_, err := os.Stat(filepath.Join(Root, "cgroup.controllers"))
	return err == nil
}

// SetHugetlb sets the hugetlb limit for a page size ("2MB", "1GB") on the
// cgroups of pid.
func SetHugetlb(pid int, pageSize string, limit uint64) error {
	paths, err := Paths(pid)
	if err != nil {
		return err
	}
	if dir, ok := paths["hugetlb"]; ok {
		return write(filepath.Join(dir, "hugetlb."+pageSize+".limit_in_bytes"), fmt.Sprint(limit))
	}
	if dir, ok := paths[""]; ok && IsV2() {
		return write(filepath.Join(dir, "hugetlb."+pageSize+".max"), fmt.Sprint(limit))
	}
	return fmt.Errorf("this host has no hugetlb cgroup controller")
}

// SetUnified writes cgroup v2 settings (file name → value) on the cgroup
// of pid.
func SetUnified(pid int, settings map[string]string) error {
	if !IsV2() {
		return fmt.Errorf("cgroup v2 settings on a cgroup v1 host")
	}
	paths, err := Paths(pid)
	if err != nil {
		return err
	}
	dir, ok := paths[""]
	if !ok {
		return fmt.Errorf("process %d has no cgroup v2 path", pid)
	}
	for k, v := range settings {
		if strings.Contains(k, "/") || strings.HasPrefix(k, ".") {
			return fmt.Errorf("%q is not a cgroup file", k)
		}
		if err := write(filepath.Join(dir, k), v); err != nil {
			return err
		}
	}
	return nil
}

func write(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
