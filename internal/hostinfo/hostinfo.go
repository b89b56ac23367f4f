// Package hostinfo reads, once at start-up, the facts about this host that
// shape what Berth asks Docker for: the capabilities processes can have,
// the device nodes, AppArmor, and how low an OOM score may go.
package hostinfo

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// capNames are the Linux capabilities by bit number.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// Capabilities returns the names of the capabilities in this process's
// bounding set when it lacks some Docker knows, or nil when it has them
// all: only then does Docker's privileged mode work.
func Capabilities() []string {
	mask, ok := boundingSet()
	if !ok {
		return nil
	}
	var have []string
	missing := false
	for bit, name := range capNames {
		if mask&(1<<uint(bit)) != 0 {
			have = append(have, name)
		} else {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	return have
}

// HasCapability reports whether the bounding set has capability bit.
func HasCapability(bit uint) bool {
	mask, ok := boundingSet()
	return !ok || mask&(1<<bit) != 0
}

func boundingSet() (uint64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return mask, err == nil
		}
	}
	return 0, false
}

// Devices lists the host's character and block devices under /dev, as
// Docker's privileged mode gives them to a container (without the
// container's own /dev/pts, /dev/shm, /dev/mqueue and console).
func Devices() []string {
	var out []string
	_ = filepath.WalkDir("/dev", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch d.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "console" || d.Name() == "ptmx" {
			return nil
		}
		if d.Type()&fs.ModeDevice != 0 {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// AppArmor reports whether the kernel has AppArmor enabled.
func AppArmor() bool {
	data, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.TrimSpace(string(data)) == "Y"
}
