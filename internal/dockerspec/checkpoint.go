package dockerspec

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/store"
)

// Annotations spec.dump carries, under the names containerd's CRI uses, so
// that tools reading checkpoints (checkpointctl) find the pod and the
// container.
const (
	annotationContainerName    = "io.kubernetes.cri.container-name"
	annotationContainerType    = "io.kubernetes.cri.container-type"
	annotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	annotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annotationImageName        = "io.kubernetes.cri.image-name"
)

// CheckpointConfig is a container's config.dump.
func CheckpointConfig(in container.InspectResponse, c *store.Container, now time.Time) archive.ContainerConfig {
	cfg := archive.ContainerConfig{
		ID:             in.ID,
		Name:           c.Metadata.GetName(),
		RootfsImage:    c.Image.GetImage(),
		RootfsImageRef: c.ImageID,
		CreatedTime:    time.Unix(0, c.CreatedAt).UTC(),
		CheckpointedAt: now.UTC(),
	}
	cfg.RootfsImageName = c.Image.GetUserSpecifiedImage()
	if cfg.RootfsImageName == "" {
		cfg.RootfsImageName = c.Image.GetImage()
	}
	if in.HostConfig != nil {
		cfg.OCIRuntime = in.HostConfig.Runtime
	}
	return cfg
}

// CheckpointSpec is a container's spec.dump: what Docker's inspect output
// says of the OCI spec Docker made for it.
func CheckpointSpec(in container.InspectResponse, c *store.Container, sb *store.Sandbox) archive.Spec {
	s := archive.Spec{
		OCIVersion: "1.0.2",
		Process:    &archive.Process{Args: ProcessArgs(in)},
		Annotations: map[string]string{
			annotationContainerName: c.Metadata.GetName(),
			annotationContainerType: "container",
			annotationSandboxID:     c.SandboxID,
			annotationImageName:     c.Image.GetImage(),
		},
	}
	maps.Copy(s.Annotations, c.Annotations)
	if sb != nil {
		s.Annotations[annotationSandboxName] = sb.Metadata.GetName()
		s.Annotations[annotationSandboxNamespace] = sb.Metadata.GetNamespace()
		s.Annotations[annotationSandboxUID] = sb.Metadata.GetUid()
	}
	if cfg := in.Config; cfg != nil {
		s.Process.Terminal = cfg.Tty
		s.Process.Env = cfg.Env
		s.Process.Cwd = cfg.WorkingDir
		s.Process.User.Username = cfg.User
		s.Hostname = cfg.Hostname
	}
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}
	if c.User != nil {
		s.Process.User.UID, s.Process.User.GID = uint32(c.User.GetUid()), uint32(c.User.GetGid())
		for _, g := range c.User.GetSupplementalGroups() {
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
		}
	}
	if in.HostConfig != nil {
		s.Root = &archive.Root{Path: "rootfs", Readonly: in.HostConfig.ReadonlyRootfs}
	}
	for _, m := range in.Mounts {
		opts := []string{"rbind"}
		if m.RW {
			opts = append(opts, "rw")
		} else {
			opts = append(opts, "ro")
		}
		if m.Propagation != "" {
			opts = append(opts, string(m.Propagation))
		}
		s.Mounts = append(s.Mounts, archive.Mount{Destination: m.Destination, Type: string(m.Type), Source: m.Source, Options: opts})
	}
	return s
}

// ProcessArgs is the container's process as Docker runs it: the
// entrypoint or command with its arguments.
func ProcessArgs(in container.InspectResponse) []string {
	if in.Path == "" {
		return nil
	}
	return append([]string{in.Path}, in.Args...)
}

// CheckpointSkipPaths are the paths of a container's filesystem that are
// not its own (mounts: volumes, Docker's /etc files, /dev/shm) and stay out
// of a checkpoint's rootfs-diff.tar, and out of a restored container.
func CheckpointSkipPaths(in container.InspectResponse) []string {
	skip := []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys"}
	for _, m := range in.Mounts {
		skip = append(skip, path.Clean(m.Destination))
	}
	if in.HostConfig != nil {
		for _, m := range in.HostConfig.Mounts {
			skip = append(skip, path.Clean(m.Target))
		}
		for _, b := range in.HostConfig.Binds {
			if parts := strings.Split(b, ":"); len(parts) >= 2 {
				skip = append(skip, path.Clean(parts[1]))
			}
		}
	}
	slices.Sort(skip)
	return slices.Compact(skip)
}

// CheckRestoredProcess fails unless a container created for RestorePod
// runs the process the checkpoint has: CRI's restore-time configuration
// must describe the checkpointed process, not change it.
func CheckRestoredProcess(field string, in container.InspectResponse, spec archive.Spec) error {
	if spec.Process == nil || in.Config == nil {
		return nil
	}
	mismatch := func(what string, want, got any) error {
		return fmt.Errorf("%s: the container's %s (%v) is not the checkpointed process's (%v): %w", field, what, got, want, errdefs.ErrFailedPrecondition)
	}
	if got := ProcessArgs(in); !slices.Equal(got, spec.Process.Args) {
		return mismatch("command and arguments", quoteAll(spec.Process.Args), quoteAll(got))
	}
	cwd := in.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if cwd != spec.Process.Cwd {
		return mismatch("working directory", spec.Process.Cwd, cwd)
	}
	want, got := slices.Sorted(slices.Values(spec.Process.Env)), slices.Sorted(slices.Values(in.Config.Env))
	if !slices.Equal(want, got) {
		return mismatch("environment", quoteAll(want), quoteAll(got))
	}
	if in.Config.User != spec.Process.User.Username {
		return mismatch("user", strconv.Quote(spec.Process.User.Username), strconv.Quote(in.Config.User))
	}
	return nil
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, " ") + "]"
}
