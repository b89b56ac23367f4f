package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cleanup"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// CreateContainer creates a container in a ready pod. Concurrent calls for
// the same container (pod, name, attempt) create one; a call that finds the
// name taken by a container kubelet was already told about fails with
// AlreadyExists.
func (s *Service) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	cfg := req.GetConfig()
	if err := dockerspec.ValidateContainerConfig(cfg); err != nil {
		return nil, err
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("pod_sandbox_id: %w", err)
	}
	if sb.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("pod_sandbox_id: pod sandbox %s is not ready: %w", dockerspec.ShortID(sb.ID), errdefs.ErrFailedPrecondition)
	}
	name := dockerspec.ContainerName(sb.Metadata, cfg.GetMetadata())
	log := logging.FromContext(ctx).With("container", name)
	id, err := s.guard.runs.do(ctx, name, func() (string, error) {
		createCtx, cancel := context.WithTimeout(logging.WithLogger(context.Background(), log), 2*s.cfg.RuntimeRequestTimeout)
		defer cancel()
		return s.createContainer(createCtx, sb, cfg, name, nil)
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// createContainer creates the container, with extraLabels (Berth's own)
// added to its Docker labels.
func (s *Service) createContainer(ctx context.Context, sb *store.Sandbox, cfg *runtimeapi.ContainerConfig, name string, extraLabels map[string]string) (string, error) {
	log := logging.FromContext(ctx)
	if existing, ok := s.store.ContainerByName(name); ok {
		return "", fmt.Errorf("config.metadata: container %q (attempt %d) already exists in pod %s as %s: %w",
			cfg.GetMetadata().GetName(), cfg.GetMetadata().GetAttempt(), dockerspec.ShortID(sb.ID), dockerspec.ShortID(existing.ID), errdefs.ErrAlreadyExists)
	}
	h, err := s.daemonReady(ctx)
	if err != nil {
		return "", err
	}
	opts := dockerspec.ContainerOptions{
		RootDir:           s.cfg.RootDir,
		APIVersion:        h.Daemon.NegotiatedAPIVersion,
		CgroupVersion:     h.Daemon.CgroupVersion,
		OOM:               s.host.OOM,
		HostCapabilities:  s.knownCaps(s.host.Capabilities),
		HostDevices:       s.host.Devices,
		AppArmor:          s.host.AppArmor,
		SELinux:           h.Daemon.SELinux(),
		ReadFile:          os.ReadFile,
		LogMaxSize:        s.cfg.DockerLogMaxSize,
		LogMaxFile:        strconv.Itoa(s.cfg.DockerLogMaxFile),
		RecursiveReadOnly: h.Daemon.RecursiveReadOnly(sb.RuntimeHandler),
		ImageMounts:       h.Daemon.ImageMounts(),
		CDI:               h.Daemon.CDI(),
		UsernsRemap:       h.Daemon.UsernsRemap(),
		Userns:            h.Daemon.UserNamespaces(),
	}
	if len(cfg.GetCDIDevices()) > 0 && opts.CDI == nil {
		if opts.CDIDevices, err = s.cdiDevices(ctx, h.Daemon); err != nil {
			return "", err
		}
	}
	// The request is translated once before anything is created on the
	// host: a refused request must not leave host directories behind.
	if _, err := dockerspec.ContainerSpec(sb, cfg, opts); err != nil {
		return "", err
	}
	if opts.HostPaths, err = prepareHostPaths(cfg.GetMounts()); err != nil {
		return "", err
	}
	spec, err := dockerspec.ContainerSpec(sb, cfg, opts)
	if err != nil {
		return "", err
	}
	maps.Copy(spec.Config.Labels, extraLabels)
	strict := cfg.GetLinux().GetSecurityContext().GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict
	if strict && spec.Config.User == "" {
		// Strict needs the primary group named: start from the user the
		// image runs as.
		if spec.Config.User, err = s.imageUser(ctx, spec.Config.Image); err != nil {
			return "", err
		}
	}
	imageID := ""
	if needsImageUsers(spec.Config.User, strict) {
		if imageID, err = s.docker.ImageID(ctx, spec.Config.Image); err != nil {
			return "", fmt.Errorf("config.image.image: %w", err)
		}
		if passwd, group, ok := s.caches.imageGroups.files(imageID); ok {
			fixImageUser(spec, strict, passwd, group)
			imageID = ""
		}
	}

	var undo cleanup.Stack
	defer undo.Run(log)
	id, err := s.createWithRetries(ctx, spec, opts)
	if err != nil {
		return "", fmt.Errorf("creating the container: %w", err)
	}
	undo.Push("remove container "+dockerspec.ShortID(id), func(ctx context.Context) error {
		return ignoreNotFound(s.docker.RemoveContainer(ctx, id))
	})
	if imageID != "" {
		// First container of this image that needs its users and
		// groups: learn them from the container's files, and remake the
		// container if they change its user or groups.
		passwd, group, err := s.learnImageFiles(ctx, id, imageID)
		if err != nil {
			return "", err
		}
		user, groups := spec.Config.User, len(spec.HostConfig.GroupAdd)
		fixImageUser(spec, strict, passwd, group)
		if spec.Config.User != user || len(spec.HostConfig.GroupAdd) != groups {
			if err := s.docker.RemoveContainer(ctx, id); err != nil {
				return "", err
			}
			if id, err = s.createWithRetries(ctx, spec, opts); err != nil {
				return "", fmt.Errorf("creating the container: %w", err)
			}
		}
	}
	if err := s.checkImageSubPaths(ctx, id, cfg.GetMounts()); err != nil {
		return "", err
	}
	in, err := s.docker.InspectContainer(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspecting the new container: %w", err)
	}
	rec, err := dockerspec.ContainerFromInspect(in, s.cfg.RootDir)
	if err != nil {
		return "", err
	}
	s.store.PutContainer(rec)
	undo.Release()
	log.Info("container created", "id", dockerspec.ShortID(id), "image", cfg.GetImage().GetImage())
	return id, nil
}

// prepareHostPaths resolves each bind mount's host path as kubelet expects:
// a symlink is followed to what it points at, and a path that does not
// exist is created as a directory. Only the paths the request names are
// touched.
func prepareHostPaths(mounts []*runtimeapi.Mount) (map[string]string, error) {
	out := map[string]string{}
	for i, m := range mounts {
		if m.GetImage().GetImage() != "" {
			continue // an image volume: no host path
		}
		p := m.GetHostPath()
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, errdefs.InvalidArgument(fmt.Sprintf("config.mounts[%d].host_path", i), "cannot create %s: %v", p, err)
			}
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Sprintf("config.mounts[%d].host_path", i), "cannot resolve %s: %v", p, err)
		}
		out[p] = real
	}
	return out, nil
}

// createWithRetries creates the container, replacing a stale one of the
// same name, and dropping from a privileged container capabilities this
// Docker does not know.
func (s *Service) createWithRetries(ctx context.Context, spec *dockerspec.CreateSpec, opts dockerspec.ContainerOptions) (string, error) {
	for attempt := 0; ; attempt++ {
		id, err := s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
		if err == nil {
			return id, nil
		}
		if attempt >= leftoverAttempts {
			return "", err
		}
		switch {
		case errors.Is(err, errdefs.ErrAlreadyExists):
			// A container of that name Berth has not indexed: left by a
			// crash between create and the record, or made outside Berth.
			// It is this container's name, so replace it.
			if rmErr := s.removeLeftover(ctx, spec.Name, attempt); rmErr != nil {
				return "", err
			}
		case unknownCapability(err) != "":
			c := unknownCapability(err)
			s.caches.unknownCaps.Store(c, true)
			s.log.Info("Docker does not know a capability of this host; privileged containers will not get it", "capability", c)
			spec.HostConfig.CapAdd = slices.DeleteFunc(spec.HostConfig.CapAdd, func(x string) bool { return x == c })
		default:
			return "", err
		}
	}
}

var unknownCapRE = regexp.MustCompile(`unknown capability: "?(CAP_[A-Z_]+)"?`)

func unknownCapability(err error) string {
	if m := unknownCapRE.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

// knownCaps drops the capabilities Docker rejected before.
func (s *Service) knownCaps(caps []string) []string {
	if caps == nil {
		return nil
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if _, unknown := s.caches.unknownCaps.Load(c); !unknown {
			out = append(out, c)
		}
	}
	return out
}

// needsImageUsers reports whether the image's /etc/passwd and /etc/group
// change a container's user spec: with Merge (the default) and a named
// primary group, runc adds none of the image's groups, which Kubernetes
// gives; with Strict and no named primary group, runc adds them all, which
// Kubernetes does not.
func needsImageUsers(user string, strict bool) bool {
	return dockerspec.NeedsImageGroups(user) != strict
}

// fixImageUser adjusts spec for the image's users and groups (see
// needsImageUsers).
func fixImageUser(spec *dockerspec.CreateSpec, strict bool, passwd, group []byte) {
	if strict {
		spec.Config.User = dockerspec.StrictUser(passwd, spec.Config.User)
		return
	}
	if dockerspec.NeedsImageGroups(spec.Config.User) {
		addGroups(spec, dockerspec.ImageGroups(passwd, group, spec.Config.User))
	}
}

func addGroups(spec *dockerspec.CreateSpec, gids []int64) {
	for _, g := range gids {
		if s := strconv.FormatInt(g, 10); !slices.Contains(spec.HostConfig.GroupAdd, s) {
			spec.HostConfig.GroupAdd = append(spec.HostConfig.GroupAdd, s)
		}
	}
}

// learnImageFiles reads /etc/passwd and /etc/group from a created
// container and caches them for its image.
func (s *Service) learnImageFiles(ctx context.Context, containerID, imageID string) (passwd, group []byte, err error) {
	const max = 4 << 20
	passwd, err = s.docker.ReadFile(ctx, containerID, "/etc/passwd", max)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	group, err = s.docker.ReadFile(ctx, containerID, "/etc/group", max)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, fmt.Errorf("reading the image's /etc/group: %w", err)
	}
	s.caches.imageGroups.put(imageID, passwd, group)
	return passwd, group, nil
}

// imageUser is the user an image runs as ("" when it names none).
func (s *Service) imageUser(ctx context.Context, ref string) (string, error) {
	img, err := s.docker.InspectImage(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("config.image.image: %w", err)
	}
	if img.Config == nil {
		return "", nil
	}
	return img.Config.User, nil
}

// checkImageSubPaths fails the create when an image volume's sub path is
// not in its image: Docker finds out only when the container starts, and
// CRI wants the create to fail. Docker mounts a created container's
// volumes to answer a stat, so the stat fails the same way the start would.
func (s *Service) checkImageSubPaths(ctx context.Context, id string, mounts []*runtimeapi.Mount) error {
	for i, m := range mounts {
		if m.GetImage().GetImage() == "" || m.GetImageSubPath() == "" {
			continue
		}
		if _, err := s.docker.StatPath(ctx, id, m.GetContainerPath()); err != nil {
			return fmt.Errorf("config.mounts[%d].image_sub_path: %q in image %s: %v: %w",
				i, m.GetImageSubPath(), m.GetImage().GetImage(), err, errdefs.ErrNotFound)
		}
	}
	return nil
}

// cdiDevices lists the CDI devices Docker knows now (it rereads its spec
// directories as they change), or nil when it does not say (API < 1.50).
func (s *Service) cdiDevices(ctx context.Context, d docker.DaemonInfo) ([]string, error) {
	if !d.APIAtLeast(docker.APIDiscoveredDevices) {
		return nil, nil
	}
	devices, err := s.docker.CDIDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Docker's CDI devices: %w", err)
	}
	if devices == nil {
		devices = []string{}
	}
	return devices, nil
}
