package ociruntime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/idmap"
)

// mountSource marks the overlay mounts the wrapper makes (the source
// column of /proc/self/mountinfo), so that delete unmounts only its own.
const mountSource = "berth-userns"

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
	superOpts  string
}

// findMount returns the topmost mount at path in mountinfo's text.
func findMount(mountinfo []byte, path string) (mountEntry, bool) {
	var found mountEntry
	ok := false
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+4 {
			continue
		}
		if unescapeOctal(f[4]) != path {
			continue
		}
		found = mountEntry{mountPoint: path, fsType: f[sep+1], source: unescapeOctal(f[sep+2]), superOpts: f[sep+3]}
		ok = true
	}
	return found, ok
}

// unescapeOctal undoes the kernel's \ooo escapes in mountinfo.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// overlayLayers are the layers of an overlay mount.
type overlayLayers struct {
	lower        []string // topmost first, as overlayfs lists them
	upper, work  string
	carriedFlags []string    // flag options copied to the new mount
	carried      [][2]string // key=value options copied to the new mount
}

// carriedOptions are the overlayfs options that change how the layers are
// read, so the wrapper's mount must have them too.
var carriedOptions = map[string]bool{"redirect_dir": true, "index": true, "metacopy": true, "xino": true, "nfs_export": true, "uuid": true, "volatile": true, "userxattr": true}

// parseOverlay reads an overlay mount's super options.
func parseOverlay(superOpts string) (overlayLayers, error) {
	var l overlayLayers
	for _, opt := range strings.Split(superOpts, ",") {
		k, v, hasValue := strings.Cut(opt, "=")
		v = unescapeOctal(v)
		switch {
		case k == "lowerdir":
			if strings.Contains(v, `\`) {
				return l, fmt.Errorf("lowerdir %q: escaped characters in layer paths are not supported", v)
			}
			l.lower = append(l.lower, strings.Split(v, ":")...)
		case k == "lowerdir+":
			l.lower = append(l.lower, v)
		case k == "upperdir":
			l.upper = v
		case k == "workdir":
			l.work = v
		case k == "datadir+":
			return l, fmt.Errorf("overlay data-only layers (datadir+) are not supported")
		case carriedOptions[k] && hasValue:
			l.carried = append(l.carried, [2]string{k, v})
		case carriedOptions[k]:
			l.carriedFlags = append(l.carriedFlags, k)
		}
	}
	if len(l.lower) == 0 {
		return l, fmt.Errorf("the overlay mount has no lower layers")
	}
	if l.upper == "" || l.work == "" {
		return l, fmt.Errorf("the overlay mount has no upper or work directory")
	}
	return l, nil
}

// rootfsLayers finds the overlay mount Docker prepared at path.
func rootfsLayers(path string) (overlayLayers, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return overlayLayers{}, err
	}
	m, ok := findMount(mi, path)
	if !ok {
		return overlayLayers{}, fmt.Errorf("the root filesystem %s is not a mount point", path)
	}
	if m.fsType != "overlay" {
		return overlayLayers{}, fmt.Errorf("the root filesystem %s is %s, not overlay: only Docker's overlay storage (overlay2, or the containerd image store's overlayfs snapshotter) can be id-mapped", path, m.fsType)
	}
	return parseOverlay(m.superOpts)
}

// mountIDMapped mounts at target a new overlay of the layers with every
// lower layer id-mapped through the user namespace usernsFD: files the
// image owns as root are then owned by the pod's root. The upper layer is
// not id-mapped (overlayfs writes its work directory as the mounter, host
// root, whom the mapping cannot name); its root directory is given to the
// pod's root instead, as containerd's overlay snapshotter does, so new
// files land on it with the pod's host IDs.
func mountIDMapped(l overlayLayers, usernsFD int, target string, rootUID, rootGID uint32) (err error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", mountSource); err != nil {
		return fmt.Errorf("overlay source: %w", err)
	}
	// overlayfs takes its own private clone of each layer when the
	// superblock is created; until then the detached id-mapped mounts
	// must stay open (closing the last descriptor of one dissolves it).
	var layerFDs []int
	defer func() {
		for _, fd := range layerFDs {
			unix.Close(fd)
		}
	}()
	for _, lower := range l.lower {
		fd, err := idmappedClone(lower, usernsFD)
		if err != nil {
			return err
		}
		layerFDs = append(layerFDs, fd)
		if err := unix.FsconfigSetFd(fsfd, "lowerdir+", fd); err != nil {
			return fmt.Errorf("overlay lowerdir+ (an id-mapped layer; needs Linux 6.8 or newer): %w", err)
		}
	}
	if err := os.Lchown(l.upper, int(rootUID), int(rootGID)); err != nil {
		return fmt.Errorf("giving the upper layer to the pod's root: %w", err)
	}
	if err := unix.FsconfigSetString(fsfd, "upperdir", l.upper); err != nil {
		return fmt.Errorf("overlay upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", l.work); err != nil {
		return fmt.Errorf("overlay workdir: %w", err)
	}
	for _, kv := range l.carried {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return fmt.Errorf("overlay %s=%s: %w", kv[0], kv[1], err)
		}
	}
	for _, k := range l.carriedFlags {
		if err := unix.FsconfigSetFlag(fsfd, k); err != nil {
			return fmt.Errorf("overlay %s: %w", k, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("creating the id-mapped overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting the id-mapped overlay at %s: %w", target, err)
	}
	return nil
}

// idmappedClone returns a detached, read-only copy of the mount at path
// with the ID mapping of usernsFD.
func idmappedClone(path string, usernsFD int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree %s: %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY, Userns_fd: uint64(usernsFD)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("id-mapping the layer %s (mount_setattr MOUNT_ATTR_IDMAP): %w", path, err)
	}
	return fd, nil
}

// isOwnMount reports whether path is a mount point of the wrapper's.
func isOwnMount(path string) bool {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	m, ok := findMount(mi, path)
	return ok && m.fsType == "overlay" && m.source == mountSource
}

// unmount detaches the wrapper's mount at path; gone already is fine.
func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", path, err)
}

// holdUsernsArg makes the wrapper wait for its stdin to close: the process
// newUserns starts to hold a user namespace open while it is read.
const holdUsernsArg = "--hold-userns"

// newUserns creates a user namespace with the mappings and returns a file
// descriptor of it. A process must create it (the kernel writes uid_map
// for a process); this one is the wrapper itself, waiting on a pipe, and
// is gone when done is called.
func newUserns(uids, gids []idmap.Mapping) (fd int, done func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return -1, nil, err
	}
	cmd := exec.Command(self, "oci-runtime", holdUsernsArg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return -1, nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: sysMappings(uids),
		GidMappings: sysMappings(gids),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, nil, fmt.Errorf("creating a user namespace for the layers' ID mapping: %w", err)
	}
	stop := func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	fd, err = unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		stop()
		return -1, nil, fmt.Errorf("opening the layers' user namespace: %w", err)
	}
	return fd, func() { unix.Close(fd); stop() }, nil
}

func sysMappings(ms []idmap.Mapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Length)}
	}
	return out
}
