package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cleanup"
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
		return nil, fmt.Errorf("pod_sandbox_id: pod sandbox %s is not ready: %w", shortID(sb.ID), errdefs.ErrFailedPrecondition)
	}
	name := dockerspec.ContainerName(sb.Metadata, cfg.GetMetadata())
	log := logging.FromContext(ctx).With("container", name)
	id, err := s.runs.do(ctx, name, func() (string, error) {
		createCtx, cancel := context.WithTimeout(logging.WithLogger(context.Background(), log), 2*s.cfg.RuntimeRequestTimeout)
		defer cancel()
		return s.createContainer(createCtx, sb, cfg, name)
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (s *Service) createContainer(ctx context.Context, sb *store.Sandbox, cfg *runtimeapi.ContainerConfig, name string) (string, error) {
	log := logging.FromContext(ctx)
	if existing, ok := s.store.ContainerByName(name); ok {
		return "", fmt.Errorf("config.metadata: container %q (attempt %d) already exists in pod %s as %s: %w",
			cfg.GetMetadata().GetName(), cfg.GetMetadata().GetAttempt(), shortID(sb.ID), shortID(existing.ID), errdefs.ErrAlreadyExists)
	}
	h := s.daemon.Health()
	if !h.Ready {
		return "", fmt.Errorf("%w: %s", errdefs.ErrUnavailable, h.Reason)
	}
	hostPaths, err := prepareHostPaths(cfg.GetMounts())
	if err != nil {
		return "", err
	}
	spec, err := dockerspec.ContainerSpec(sb, cfg, dockerspec.ContainerOptions{
		RootDir:          s.cfg.RootDir,
		APIVersion:       h.Daemon.NegotiatedAPIVersion,
		CgroupVersion:    h.Daemon.CgroupVersion,
		OOM:              s.oom,
		HostCapabilities: s.host.Capabilities,
		HostDevices:      s.host.Devices,
		AppArmor:         s.host.AppArmor,
		ReadFile:         os.ReadFile,
		HostPaths:        hostPaths,
		LogMaxSize:       s.cfg.DockerLogMaxSize,
		LogMaxFile:       strconv.Itoa(s.cfg.DockerLogMaxFile),
	})
	if err != nil {
		return "", err
	}

	var undo cleanup.Stack
	defer undo.Run(log)
	id, err := s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// A container of that name Berth has not indexed: left by a crash
		// between create and the record, or made outside Berth. It is
		// this container's name, so replace it.
		if rmErr := s.docker.RemoveContainer(ctx, spec.Name); rmErr == nil {
			id, err = s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
		}
	}
	if err != nil {
		return "", fmt.Errorf("creating the container: %w", err)
	}
	undo.Push("remove container "+shortID(id), func(ctx context.Context) error {
		return ignoreNotFound(s.docker.RemoveContainer(ctx, id))
	})
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
	log.Info("container created", "id", shortID(id), "image", cfg.GetImage().GetImage())
	return id, nil
}

// prepareHostPaths resolves each bind mount's host path as kubelet expects:
// a symlink is followed to what it points at, and a path that does not
// exist is created as a directory. Only the paths the request names are
// touched.
func prepareHostPaths(mounts []*runtimeapi.Mount) (map[string]string, error) {
	out := map[string]string{}
	for i, m := range mounts {
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
