// Package stats reads resource usage from the kernel (cgroup files,
// statfs, network namespaces) rather than from Docker's slow per-container
// stats endpoint.
package stats

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FsUsage is the usage of the filesystem holding a path, as df reports it.
type FsUsage struct {
	Mountpoint string
	// Device is the mounted source ("/dev/vda1", "overlay").
	Device         string
	UsedBytes      uint64
	CapacityBytes  uint64
	AvailableBytes uint64
	InodesUsed     uint64
	InodesTotal    uint64
}

// Filesystem returns the usage of the filesystem that holds path.
func Filesystem(path string) (FsUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FsUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	mp, dev, err := mountOf(path)
	if err != nil {
		return FsUsage{}, err
	}
	bsize := uint64(st.Bsize)
	return FsUsage{
		Mountpoint:     mp,
		Device:         dev,
		UsedBytes:      (st.Blocks - st.Bfree) * bsize,
		CapacityBytes:  st.Blocks * bsize,
		AvailableBytes: st.Bavail * bsize,
		InodesUsed:     st.Files - st.Ffree,
		InodesTotal:    st.Files,
	}, nil
}

// Mountpoint returns the mount point of the filesystem holding path: the
// longest mount point in /proc/self/mountinfo that is a prefix of path.
func Mountpoint(path string) (string, error) {
	mp, _, err := mountOf(path)
	return mp, err
}

// mountOf returns the mount point and the mounted source of the
// filesystem holding path.
func mountOf(path string) (mountpoint, source string, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	best, bestSource := "/", ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if (real == mp || strings.HasPrefix(real, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, bestSource = mp, ""
			// After the optional fields: "-", the type, the source.
			for i := 5; i+2 < len(fields); i++ {
				if fields[i] == "-" {
					bestSource = unescapeMountinfo(fields[i+2])
					break
				}
			}
		}
	}
	return best, bestSource, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space, …) the kernel
// uses in /proc/*/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
