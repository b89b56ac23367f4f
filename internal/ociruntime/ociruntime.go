// Package ociruntime is `berth oci-runtime`, the OCI runtime Docker runs
// the containers of pods with a user namespace of their own through
// (daemon.json "runtimes": berth-userns). It stands in for runc: for a
// container Berth annotated (package idmap) it adds the pod's user
// namespace to the bundle's config.json, mounts the root filesystem with
// its lower layers id-mapped to the pod's IDs, marks the bind mounts to
// id-map for runc, and runs runc; when the container is deleted it
// unmounts what it mounted. Every other container, and every other
// command, goes to runc unchanged.
//
// It fails closed: when it cannot apply a user namespace Berth asked for,
// runc is not run, and the container does not start.
package ociruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/idmap"
)

// Run is `berth oci-runtime [--runc PATH] [--mount-dir DIR] [--] <runc
// arguments>` and returns the exit code. PATH is the runc to run
// (default: runc on PATH), DIR where root filesystems are mounted
// (DefaultMountDir).
func Run(args []string) int {
	runc, mountDir := "runc", DefaultMountDir
loop:
	for len(args) > 0 {
		switch a := args[0]; {
		case a == holdUsernsArg:
			// newUserns's helper: hold the namespace until told.
			_, _ = io.Copy(io.Discard, os.Stdin)
			return 0
		case a == probeArg:
			return probeHere()
		case a == "--runc" && len(args) > 1:
			runc, args = args[1], args[2:]
		case strings.HasPrefix(a, "--runc="):
			runc, args = strings.TrimPrefix(a, "--runc="), args[1:]
		case a == "--mount-dir" && len(args) > 1:
			mountDir, args = args[1], args[2:]
		case a == "--":
			args = args[1:]
			break loop
		default:
			break loop
		}
	}
	w := &wrapper{mountDir: mountDir, args: args, inv: parseInvocation(args)}
	path, err := exec.LookPath(runc)
	if err != nil {
		return w.fail(fmt.Errorf("finding runc (--runc %s): %w", runc, err))
	}
	w.runc = path
	switch w.inv.command {
	case "create", "run":
		return w.create()
	case "delete":
		return w.delete()
	case "features":
		return w.features()
	default:
		return w.exec()
	}
}

// DefaultMountDir is where the wrapper mounts the root filesystems it
// id-maps, one directory per container id; on a tmpfs (/run), so a reboot
// leaves none behind.
const DefaultMountDir = "/run/berth-userns"

type wrapper struct {
	// mountDir holds the id-mapped root filesystems (--mount-dir).
	mountDir string
	runc     string
	args     []string
	inv      invocation
}

// exec replaces the wrapper with runc.
func (w *wrapper) exec() int {
	err := syscall.Exec(w.runc, append([]string{w.runc}, w.args...), os.Environ())
	return w.fail(fmt.Errorf("executing %s: %w", w.runc, err))
}

// run runs runc as a child, for commands after which the wrapper has more
// to do, and returns its exit code.
func (w *wrapper) run() int {
	cmd := exec.Command(w.runc, w.args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		return w.fail(fmt.Errorf("running %s: %w", w.runc, err))
	}
}

// fail reports err where Docker's shim looks for runc's errors (the
// --log file, whose last error becomes "OCI runtime create failed: …")
// and on stderr, and returns runc's failure exit code.
func (w *wrapper) fail(err error) int {
	msg := "berth oci-runtime: " + err.Error()
	fmt.Fprintln(os.Stderr, msg)
	if w.inv.log != "" {
		if f, ferr := os.OpenFile(w.inv.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); ferr == nil {
			if w.inv.logFormat == "json" {
				b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339Nano)})
				_, _ = f.Write(append(b, '\n'))
			} else {
				fmt.Fprintf(f, "time=%q level=error msg=%q\n", time.Now().Format(time.RFC3339Nano), msg)
			}
			_ = f.Close()
		}
	}
	return 1
}

// create prepares a Berth user-namespace container and runs runc create;
// any other container goes to runc untouched.
func (w *wrapper) create() int {
	bundle := w.inv.bundle
	if bundle == "" {
		bundle = "." // runc's default: the working directory
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return w.fail(err)
	}
	configPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return w.exec() // runc reports it
	}
	s, err := decodeSpec(raw)
	if err != nil || !wantsUserns(s) {
		return w.exec()
	}
	p, err := readPlan(s)
	if err != nil {
		return w.fail(fmt.Errorf("container %s: %w", w.inv.id, err))
	}
	if !filepath.IsAbs(p.rootPath) {
		p.rootPath = filepath.Join(bundle, p.rootPath)
	}
	if w.inv.id == "" || strings.ContainsAny(w.inv.id, "/\x00") || w.inv.id == "." || w.inv.id == ".." {
		return w.fail(fmt.Errorf("%q is not a container id", w.inv.id))
	}
	target := filepath.Join(w.mountDir, w.inv.id)
	if err := prepareRootfs(p, target); err != nil {
		return w.fail(fmt.Errorf("container %s: %w", w.inv.id, err))
	}
	s.apply(p, target)
	out, err := s.encode()
	if err == nil {
		err = writeFileAtomic(configPath, out)
	}
	if err != nil {
		_ = unmount(target)
		return w.fail(fmt.Errorf("container %s: writing config.json: %w", w.inv.id, err))
	}
	code := w.run()
	if code != 0 {
		_ = unmount(target)
		_ = os.Remove(target)
	}
	return code
}

// prepareRootfs mounts the container's root filesystem, id-mapped, at
// target.
func prepareRootfs(p *plan, target string) error {
	uid, okU := idmap.HostRoot(p.uids)
	gid, okG := idmap.HostRoot(p.gids)
	if !okU || !okG {
		return fmt.Errorf("the pod's mappings do not map ID 0")
	}
	var usernsFD int
	switch p.role {
	case idmap.RoleSandbox:
		fd, done, err := newUserns(p.uids, p.gids)
		if err != nil {
			return err
		}
		defer done()
		usernsFD = fd
	default:
		if err := checkPauseUserns(p); err != nil {
			return err
		}
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", p.pausePid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening the pause container's user namespace: %w", err)
		}
		defer unix.Close(fd)
		usernsFD = fd
	}
	layers, err := rootfsLayers(p.rootPath)
	if err != nil {
		return err
	}
	// runc resolves the root filesystem's path as the pod's root, inside
	// the user namespace: every directory on the way must be searchable
	// by others (Docker's bundle directory is not).
	if err := os.MkdirAll(filepath.Dir(target), 0o711); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(target), 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	// A create retried in the same bundle finds the earlier mount.
	if isOwnMount(target) {
		if err := unmount(target); err != nil {
			return err
		}
	}
	return mountIDMapped(layers, usernsFD, target, uid, gid)
}

// checkPauseUserns fails unless the pause container's process has the
// pod's mappings: the process at pausePid is then the pod's (not a
// reused pid) and in the pod's user namespace, not the host's.
func checkPauseUserns(p *plan) error {
	for _, c := range []struct {
		file string
		want []idmap.Mapping
	}{{"uid_map", p.uids}, {"gid_map", p.gids}} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p.pausePid, c.file))
		if err != nil {
			return fmt.Errorf("reading the pause container's %s (is it running?): %w", c.file, err)
		}
		got, err := idmap.ParseProcMap(data)
		if err != nil {
			return err
		}
		if !idmap.Equal(got, c.want) {
			return fmt.Errorf("the pause container (pid %d) has %s %v, not the pod's %v", p.pausePid, c.file, got, c.want)
		}
	}
	return nil
}

// delete runs runc delete, then unmounts the root filesystem the wrapper
// mounted for the container, found from runc's state (so nothing of the
// wrapper's needs to outlive the create).
func (w *wrapper) delete() int {
	rootfs := stateRootfs(w.inv.root, w.inv.id)
	code := w.run()
	if code == 0 && rootfs != "" && isOwnMount(rootfs) {
		if err := unmount(rootfs); err != nil {
			return w.fail(err)
		}
		_ = os.Remove(rootfs)
	}
	return code
}

// stateRootfs is the root filesystem runc's state records for the
// container id, or "".
func stateRootfs(root, id string) string {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return ""
	}
	raw, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return ""
	}
	var st struct {
		Config struct {
			Rootfs string `json:"rootfs"`
		} `json:"config"`
	}
	if json.Unmarshal(raw, &st) != nil {
		return ""
	}
	return st.Config.Rootfs
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".berth-tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
