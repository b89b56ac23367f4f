package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/cleanup"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/hostfs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
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
	id, err := s.guard.runs.do(ctx, name, func() (string, error) {
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

// runSandbox makes the sandbox; RunPodSandbox runs it once per name. Each
// step that leaves something behind pushes its undo on the cleanup stack
// right after it succeeds; a failure runs the stack, last step first.
func (s *Service) runSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	log := logging.FromContext(ctx)
	if id, ok, err := s.reuseSandbox(ctx, cfg); ok || err != nil {
		return id, err
	}
	p, err := s.planSandbox(ctx, cfg, handler)
	if err != nil {
		return "", err
	}
	if err := s.pause.Ensure(ctx); err != nil {
		return "", err
	}

	// The new id's lock is held from the create until the sandbox is
	// indexed or undone (released after the undo, so registered first):
	// the event watcher must not index a sandbox this call is removing.
	var unlock func()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	var undo cleanup.Stack
	defer func() {
		if n := undo.Run(log); n > 0 {
			log.Error("a failed RunPodSandbox could not be fully undone", "failedSteps", n)
		}
	}()

	id, err := s.createPause(ctx, p.spec)
	if errors.Is(err, errdefs.ErrNotFound) {
		// The sandbox image went since Ensure last saw it (removed by
		// hand or through RemoveImage): make it again and retry once.
		s.pause.Forget()
		if err = s.pause.Ensure(ctx); err == nil {
			id, err = s.createPause(ctx, p.spec)
		}
	}
	if err != nil {
		return "", err
	}
	unlock = s.guard.locks.lock(id)
	undo.Push("remove pause container "+dockerspec.ShortID(id), func(ctx context.Context) error {
		return ignoreNotFound(s.docker.RemoveContainer(ctx, id))
	})
	cp := newSandboxCheckpoint(id, p, cfg, handler)
	undo.Push("delete checkpoint "+dockerspec.ShortID(id), func(context.Context) error { return s.checkpoints.Delete(id) })

	sb, inspect, err := s.startPause(ctx, id, cfg, p)
	if err != nil {
		return "", err
	}

	// The checkpoint is first written here, once the pause container runs:
	// a crash before this point leaves a container of Berth's without a
	// record, which has no network to undo and is listed NOTREADY.
	switch {
	case p.useCNI:
		sb.NetNS = netnsPath(sb.Pid)
		att, err := s.network.Prepare(podNetwork(id, cp, sb.NetNS, cfg, p.spec.HostConfig.CgroupParent))
		if err != nil {
			return "", err
		}
		// Recorded before ADD runs: a crash during ADD still leads to
		// the DEL that releases what ADD allocated.
		if err := s.saveSandbox(cp, toCheckpointNetwork(att, checkpoint.StateAdding)); err != nil {
			return "", err
		}
		undo.Push("CNI DEL "+dockerspec.ShortID(id), func(ctx context.Context) error {
			return s.network.Del(ctx, id, att, netnsIfRunning(sb.Pid))
		})
		if err := s.network.Add(ctx, id, att); err != nil {
			return "", fmt.Errorf("%w: setting up the pod network: %w", errdefs.ErrUnavailable, err)
		}
		if err := s.saveSandbox(cp, toCheckpointNetwork(att, checkpoint.StateUp)); err != nil {
			return "", err
		}
		sb.IPs = att.IPs
	case !p.hostNet:
		sb.IPs = dockerspec.BridgeIPs(inspect)
		fallthrough
	default:
		if err := s.saveSandbox(cp, nil); err != nil {
			return "", err
		}
	}
	sb.NetworkReady = true

	s.store.PutSandbox(sb)
	undo.Release()
	log.Info("pod sandbox running", "id", id, "ips", strings.Join(sb.IPs, ","))
	return id, nil
}

// reuseSandbox looks for a sandbox of this very attempt. A ready one is
// returned (ok); one that is not ready is removed, as its name is needed,
// and runSandbox goes on.
func (s *Service) reuseSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (id string, ok bool, err error) {
	log := logging.FromContext(ctx)
	existing, found := s.store.SandboxByName(dockerspec.SandboxName(cfg.GetMetadata()))
	if !found {
		return "", false, nil
	}
	if existing.State() == runtimeapi.PodSandboxState_SANDBOX_READY {
		log.Info("pod sandbox already runs; returning it", "id", existing.ID)
		return existing.ID, true, nil
	}
	// An earlier call failed half-way or the pod died before kubelet saw
	// it.
	log.Info("replacing a not-ready pod sandbox with the same name", "id", existing.ID)
	if err := s.removeSandbox(ctx, existing.ID); err != nil {
		return "", false, fmt.Errorf("removing the earlier sandbox %s of this pod: %w", existing.ID, err)
	}
	return "", false, nil
}

// sandboxPlan is what runSandbox decided before it made anything.
type sandboxPlan struct {
	spec   *dockerspec.CreateSpec
	health docker.Health
	// hostNet is a pod in the node's network namespace; useCNI is a pod
	// that CNI networks (neither host network nor Docker-bridge mode).
	hostNet, useCNI bool
}

// planSandbox checks that Docker and, when the pod needs it, the pod
// network are ready, and translates the pod's config into the pause
// container's.
func (s *Service) planSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (sandboxPlan, error) {
	h, err := s.daemonReady(ctx)
	if err != nil {
		return sandboxPlan{}, err
	}
	spec, err := dockerspec.SandboxSpec(cfg, handler, dockerspec.SandboxOptions{
		Image:        s.cfg.PodInfraContainerImage,
		RootDir:      s.cfg.RootDir,
		CNI:          s.network.UsesCNI(),
		CgroupDriver: h.Daemon.CgroupDriver,
		Runtimes:     h.Daemon.Runtimes,
		OOM:          s.host.OOM,
		UsernsRemap:  h.Daemon.UsernsRemap(),
		Userns:       h.Daemon.UserNamespaces(),
		AppArmor:     s.host.AppArmor,
		ReadFile:     os.ReadFile,
	})
	if err != nil {
		return sandboxPlan{}, err
	}
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	useCNI := s.network.UsesCNI() && !hostNet
	if useCNI {
		if ready, reason := s.network.Ready(); !ready {
			return sandboxPlan{}, fmt.Errorf("%w: pod network is not ready: %s", errdefs.ErrFailedPrecondition, reason)
		}
	}
	return sandboxPlan{spec: spec, health: h, hostNet: hostNet, useCNI: useCNI}, nil
}

// createPause creates the pause container. A container with its name that
// Berth does not know was left by a crash between create and the record:
// it is this pod's, so it is removed and the create tried again.
func (s *Service) createPause(ctx context.Context, spec *dockerspec.CreateSpec) (string, error) {
	for attempt := 0; ; attempt++ {
		id, err := s.docker.CreateContainer(ctx, spec.Name, spec.Config, spec.HostConfig)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, errdefs.ErrAlreadyExists) || attempt >= leftoverAttempts {
			return "", fmt.Errorf("creating the pause container: %w", err)
		}
		if rmErr := s.removeLeftover(ctx, spec.Name, attempt); rmErr != nil {
			return "", fmt.Errorf("creating the pause container: %w", err)
		}
	}
}

// leftoverAttempts bounds the creates tried under a name a leftover holds.
const leftoverAttempts = 8

// removeLeftover removes the container Docker has under name that Berth
// does not know, so that the caller can create it again. A create that a
// killed Berth left in flight holds the name before its container can be
// removed (Docker answers NotFound for it until that create ends), so
// NotFound waits a moment, growing with attempt, and lets the caller try.
func (s *Service) removeLeftover(ctx context.Context, name string, attempt int) error {
	err := s.docker.RemoveContainer(ctx, name)
	if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	wait := min(50*time.Millisecond<<attempt, time.Second)
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newSandboxCheckpoint is the sandbox's record, before its network.
func newSandboxCheckpoint(id string, p sandboxPlan, cfg *runtimeapi.PodSandboxConfig, handler string) *checkpoint.Sandbox {
	return &checkpoint.Sandbox{
		ID:             id,
		Name:           p.spec.Name,
		PodName:        cfg.GetMetadata().GetName(),
		PodNamespace:   cfg.GetMetadata().GetNamespace(),
		PodUID:         cfg.GetMetadata().GetUid(),
		Attempt:        cfg.GetMetadata().GetAttempt(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: handler,
		LogDirectory:   cfg.GetLogDirectory(),
		CreatedAt:      time.Now().UnixNano(),
		HostNetwork:    p.hostNet,
		PortMappings:   checkpointPorts(cfg.GetPortMappings()),
	}
}

// startPause starts the pause container and reads it back as the index
// record of an owned sandbox; it fails if the container does not run, or
// does not run in the user namespace the pod asked for.
func (s *Service) startPause(ctx context.Context, id string, cfg *runtimeapi.PodSandboxConfig, p sandboxPlan) (*store.Sandbox, container.InspectResponse, error) {
	if err := s.docker.StartContainer(ctx, id); err != nil {
		return nil, container.InspectResponse{}, fmt.Errorf("starting the pause container: %w", err)
	}
	inspect, err := s.docker.InspectContainer(ctx, id)
	if err != nil {
		return nil, container.InspectResponse{}, fmt.Errorf("inspecting the pause container: %w", err)
	}
	sb, err := dockerspec.SandboxFromInspect(inspect, s.cfg.RootDir)
	if err != nil {
		return nil, inspect, err
	}
	sb.Owned = true
	if !sb.Running || sb.Pid == 0 {
		return nil, inspect, fmt.Errorf("%w: the pause container exited right after it started (state %q)", errdefs.ErrInternal, inspect.State.Status)
	}
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); dockerspec.PodUserns(ns) {
		if err := checkUserns(ns.GetUsernsOptions(), sb.Pid, p.health.Daemon.UsernsRemap()); err != nil {
			return nil, inspect, err
		}
	}
	return sb, inspect, nil
}

// podNetwork is what CNI is told of the pod.
func podNetwork(id string, cp *checkpoint.Sandbox, netns string, cfg *runtimeapi.PodSandboxConfig, cgroupParent string) network.PodNetwork {
	return network.PodNetwork{
		SandboxID:    id,
		PodName:      cp.PodName,
		PodNamespace: cp.PodNamespace,
		PodUID:       cp.PodUID,
		NetNS:        netns,
		PortMappings: cniPorts(cfg.GetPortMappings()),
		Annotations:  cfg.GetAnnotations(),
		CgroupParent: cgroupParent,
	}
}

// saveSandbox writes the sandbox's checkpoint with its network record (nil
// for none): the one error path of the three writes in runSandbox.
func (s *Service) saveSandbox(cp *checkpoint.Sandbox, n *checkpoint.Network) error {
	cp.Network = n
	if err := s.checkpoints.Save(cp); err != nil {
		return fmt.Errorf("%w: writing the sandbox checkpoint: %w", errdefs.ErrInternal, err)
	}
	return nil
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
	if pid <= 0 || !hostfs.Exists(netnsPath(pid)) {
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

func ignoreNotFound(err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}
