package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/cleanup"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/network"
)

// RunPodSandbox creates and starts a pod's pause container and sets up its
// network. It is idempotent per pod (name, namespace, uid, attempt): a
// second call while the first runs, or after it finished, returns the same
// sandbox. The work is not bound to the caller's deadline — pod start-up on
// Docker can outlast it — so kubelet's retry picks up the finished sandbox
// instead of failing on a reserved name.
func (s *Service) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if err := dockerspec.ValidatePodSandboxConfig(cfg); err != nil {
		return nil, err
	}
	if err := network.ValidatePodAnnotations(cfg.GetAnnotations()); err != nil {
		return nil, err
	}
	name := dockerspec.SandboxName(cfg.GetMetadata())
	log := logging.FromContext(ctx).With("sandbox", name)
	id, err := s.runs.do(ctx, name, func() (string, error) {
		// Bounded on its own: twice the request timeout covers a pause
		// image build, create, start and CNI ADD on a loaded node.
		runCtx, cancel := context.WithTimeout(logging.WithLogger(context.Background(), log), 2*s.cfg.RuntimeRequestTimeout)
		defer cancel()
		return s.runSandbox(runCtx, cfg, req.GetRuntimeHandler())
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *Service) runSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	log := logging.FromContext(ctx)
	name := dockerspec.SandboxName(cfg.GetMetadata())

	if existing, ok := s.store.SandboxByName(name); ok {
		if existing.State() == runtimeapi.PodSandboxState_SANDBOX_READY {
			log.Info("pod sandbox already runs; returning it", "id", existing.ID)
			return existing.ID, nil
		}
		// A sandbox of this very attempt that is not ready: an earlier
		// call failed half-way or the pod died before kubelet saw it.
		// Replace it, as its name is needed.
		log.Info("replacing a not-ready pod sandbox with the same name", "id", existing.ID)
		if err := s.removeSandbox(ctx, existing.ID); err != nil {
			return "", fmt.Errorf("removing the earlier sandbox %s of this pod: %w", existing.ID, err)
		}
	}

	h, err := s.daemonReady(ctx)
	if err != nil {
		return "", err
	}
	spec, err := dockerspec.SandboxSpec(cfg, handler, dockerspec.SandboxOptions{
		Image:        s.cfg.PodInfraContainerImage,
		RootDir:      s.cfg.RootDir,
		CNI:          s.network.UsesCNI(),
		CgroupDriver: h.Daemon.CgroupDriver,
		Runtimes:     h.Daemon.Runtimes,
		OOM:          s.oom,
		UsernsRemap:  h.Daemon.UsernsRemap(),
		Userns:       h.Daemon.UserNamespaces(),
		AppArmor:     s.host.AppArmor,
		ReadFile:     os.ReadFile,
	})
	if err != nil {
		return "", err
	}
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	useCNI := s.network.UsesCNI() && !hostNet
	if useCNI {
		if ready, reason := s.network.Ready(); !ready {
			return "", fmt.Errorf("%w: pod network is not ready: %s", errdefs.ErrFailedPrecondition, reason)
		}
	}

	if err := s.pause.Ensure(ctx); err != nil {
		return "", err
	}

	var undo cleanup.Stack
	defer func() {
		if n := undo.Run(log); n > 0 {
			log.Error("a failed RunPodSandbox could not be fully undone", "failedSteps", n)
		}
	}()

	id, err := s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// A container with this name that Berth does not know: left by a
		// crash between create and the record. It is this pod's, so
		// remove it and try once more.
		if rmErr := s.docker.RemoveContainer(ctx, spec.Name); rmErr == nil {
			id, err = s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
		}
	}
	if err != nil {
		return "", fmt.Errorf("creating the pause container: %w", err)
	}
	undo.Push("remove pause container "+shortID(id), func(ctx context.Context) error {
		return ignoreNotFound(s.docker.RemoveContainer(ctx, id))
	})

	cp := &checkpoint.Sandbox{
		ID:             id,
		Name:           spec.Name,
		PodName:        cfg.GetMetadata().GetName(),
		PodNamespace:   cfg.GetMetadata().GetNamespace(),
		PodUID:         cfg.GetMetadata().GetUid(),
		Attempt:        cfg.GetMetadata().GetAttempt(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: handler,
		LogDirectory:   cfg.GetLogDirectory(),
		CreatedAt:      time.Now().UnixNano(),
		HostNetwork:    hostNet,
		PortMappings:   checkpointPorts(cfg.GetPortMappings()),
	}
	undo.Push("delete checkpoint "+shortID(id), func(context.Context) error { return s.checkpoints.Delete(id) })

	if err := s.docker.StartContainer(ctx, id); err != nil {
		return "", fmt.Errorf("starting the pause container: %w", err)
	}
	inspect, err := s.docker.InspectContainer(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspecting the pause container: %w", err)
	}
	sb, err := dockerspec.SandboxFromInspect(inspect, s.cfg.RootDir)
	if err != nil {
		return "", err
	}
	sb.Owned = true
	if !sb.Running || sb.Pid == 0 {
		return "", fmt.Errorf("%w: the pause container exited right after it started (state %q)", errdefs.ErrInternal, inspect.State.Status)
	}
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); dockerspec.PodUserns(ns) {
		if err := checkUserns(ns.GetUsernsOptions(), sb.Pid, h.Daemon.UsernsRemap()); err != nil {
			return "", err
		}
	}

	// The checkpoint is first written here, once the pause container runs:
	// a crash before this point leaves a container of Berth's without a
	// record, which has no network to undo and is listed NOTREADY.
	switch {
	case useCNI:
		sb.NetNS = netnsPath(sb.Pid)
		att, err := s.network.Prepare(network.PodNetwork{
			SandboxID:    id,
			PodName:      cp.PodName,
			PodNamespace: cp.PodNamespace,
			PodUID:       cp.PodUID,
			NetNS:        sb.NetNS,
			PortMappings: cniPorts(cfg.GetPortMappings()),
			Annotations:  cfg.GetAnnotations(),
			CgroupParent: spec.HostConfig.CgroupParent,
		})
		if err != nil {
			return "", err
		}
		// Recorded before ADD runs: a crash during ADD still leads to
		// the DEL that releases what ADD allocated.
		cp.Network = toCheckpointNetwork(att, checkpoint.StateAdding)
		if err := s.checkpoints.Save(cp); err != nil {
			return "", fmt.Errorf("%w: writing the sandbox checkpoint: %w", errdefs.ErrInternal, err)
		}
		undo.Push("CNI DEL "+shortID(id), func(ctx context.Context) error {
			return s.network.Del(ctx, id, att, netnsIfRunning(sb.Pid))
		})
		if err := s.network.Add(ctx, id, att); err != nil {
			return "", fmt.Errorf("%w: setting up the pod network: %w", errdefs.ErrUnavailable, err)
		}
		cp.Network = toCheckpointNetwork(att, checkpoint.StateUp)
		if err := s.checkpoints.Save(cp); err != nil {
			return "", fmt.Errorf("%w: writing the sandbox checkpoint: %w", errdefs.ErrInternal, err)
		}
		sb.IPs = att.IPs
	case !hostNet:
		sb.IPs = dockerspec.BridgeIPs(inspect)
		fallthrough
	default:
		if err := s.checkpoints.Save(cp); err != nil {
			return "", fmt.Errorf("%w: writing the sandbox checkpoint: %w", errdefs.ErrInternal, err)
		}
	}
	sb.NetworkReady = true

	s.store.PutSandbox(sb)
	undo.Release()
	log.Info("pod sandbox running", "id", id, "ips", strings.Join(sb.IPs, ","))
	return id, nil
}

// checkUserns fails unless the pause container's user namespace has the
// ID mappings the pod asked for: on a remapping daemon, that the pod asked
// for the daemon's; through Berth's runtime wrapper, that the wrapper
// applied them (were it to fail open, the pod would not start).
func checkUserns(u *runtimeapi.UserNamespace, pid int, remap bool) error {
	uids, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return fmt.Errorf("%w: reading the pause container's uid_map: %w", errdefs.ErrInternal, err)
	}
	gids, err := os.ReadFile(fmt.Sprintf("/proc/%d/gid_map", pid))
	if err != nil {
		return fmt.Errorf("%w: reading the pause container's gid_map: %w", errdefs.ErrInternal, err)
	}
	if !remap {
		return dockerspec.CheckWrapperMappings(u, uids, gids)
	}
	return dockerspec.CheckUsernsMappings(u, uids, gids)
}

// netnsPath is the network namespace of a running process.
func netnsPath(pid int) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }

// netnsIfRunning returns pid's network namespace path while the process
// exists, else "" (a DEL then releases what lives outside the namespace).
func netnsIfRunning(pid int) string {
	if pid <= 0 || !pathExists(netnsPath(pid)) {
		return ""
	}
	return netnsPath(pid)
}

func checkpointPorts(pms []*runtimeapi.PortMapping) []checkpoint.PortMapping {
	var out []checkpoint.PortMapping
	for _, pm := range pms {
		out = append(out, checkpoint.PortMapping{
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			ContainerPort: pm.GetContainerPort(),
			HostPort:      pm.GetHostPort(),
			HostIP:        pm.GetHostIp(),
		})
	}
	return out
}

// cniPorts are the port mappings the portmap plugin gets: only those with a
// host port.
func cniPorts(pms []*runtimeapi.PortMapping) []network.PortMapping {
	var out []network.PortMapping
	for _, pm := range pms {
		if pm.GetHostPort() == 0 {
			continue
		}
		out = append(out, network.PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	return out
}

// toCheckpointNetwork is the record of an attachment in a state.
func toCheckpointNetwork(a *network.Attachment, state string) *checkpoint.Network {
	return &checkpoint.Network{State: state, Attachment: *a}
}

// fromCheckpointNetwork is the attachment a record holds.
func fromCheckpointNetwork(n *checkpoint.Network) *network.Attachment {
	a := n.Attachment
	return &a
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func ignoreNotFound(err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}
