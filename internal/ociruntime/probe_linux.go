package ociruntime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/idmap"
)

// probeArg runs probeHere in a process of its own (see probe).
const probeArg = "--probe-idmapped-rootfs"

// probe checks that this kernel can do what create does to a root
// filesystem: an overlay whose lower layer is an id-mapped, detached
// mount. It runs in a child process with a private mount namespace (the
// Go runtime makes its mounts private), so it leaves nothing mounted
// whatever happens.
func probe() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "oci-runtime", probeArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	return nil
}

// probeHere is the probe's child: it prints why it failed, if it did.
func probeHere() int {
	if err := probeInPrivateNamespace(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func probeInPrivateNamespace() error {
	dir, err := os.MkdirTemp("", "berth-userns-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting a tmpfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	l := overlayLayers{lower: []string{filepath.Join(dir, "lower")}, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work")}
	for _, d := range []string{l.lower[0], l.upper, l.work, filepath.Join(dir, "merged")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(l.lower[0], "f"), nil, 0o644); err != nil {
		return err
	}
	m := []idmap.Mapping{{ContainerID: 0, HostID: 100000, Length: 65536}}
	fd, done, err := newUserns(m, m)
	if err != nil {
		return err
	}
	defer done()
	merged := filepath.Join(dir, "merged")
	if err := mountIDMapped(l, fd, merged, 100000, 100000); err != nil {
		return err
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(merged, "f"), &st); err != nil {
		return err
	}
	if st.Uid != 100000 {
		return fmt.Errorf("a file the lower layer owns as 0 shows as %d through the id-mapped overlay, not 100000", st.Uid)
	}
	return nil
}
