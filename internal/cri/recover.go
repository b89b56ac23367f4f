package cri

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/store"
)

// inspectParallelism bounds concurrent inspects during a resync.
const inspectParallelism = 8

// Inventory is all that recovery asks of Docker: the containers that carry
// Kubernetes' type label, and what each one is. Containers has both
// methods; naming the two here keeps recovery from growing a dependency on
// the rest of the client unnoticed, and lets its tests fake just this.
type Inventory interface {
	// ListContainers lists the containers, running or not, that carry
	// every one of labels ("key" or "key=value").
	ListContainers(ctx context.Context, labels ...string) ([]container.Summary, error)
	// InspectContainer returns what Docker knows of one container;
	// errdefs.ErrNotFound if it is gone.
	InspectContainer(ctx context.Context, id string) (container.InspectResponse, error)
}

// Recover rebuilds Berth's index from Docker and the checkpoints. It runs
// once at start-up, after Docker first answers and before the readiness
// gate opens. Sandboxes whose pause container vanished while Berth was down
// keep their record (NOTREADY) and get their network torn down now.
//
// A panic in it is returned as an error wrapping errdefs.ErrInternal: the
// caller retries as after any failure, and the gate stays closed meanwhile.
func (s *Service) Recover(ctx context.Context) error {
	start := time.Now()
	if err := panics.Call(ctx, panics.Recovery, func() error { return s.resync(ctx) }); err != nil {
		return err
	}
	s.events.since = start
	s.log.Info("index rebuilt", "sandboxes", len(s.store.Sandboxes(nil)), "containers", len(s.store.Containers(nil)))
	return nil
}

// resync makes the index match Docker and the checkpoints: it adds what is
// missing, refreshes what Docker reports, and drops (or marks gone) what no
// longer exists. It runs at start-up and after every break in the event
// stream, when events may have been missed.
func (s *Service) resync(ctx context.Context) error {
	return s.resyncFrom(ctx, s.docker)
}

// resyncFrom is resync reading Docker through inv.
func (s *Service) resyncFrom(ctx context.Context, inv Inventory) error {
	log := logging.FromContext(ctx)
	cps := map[string]*checkpoint.Sandbox{}
	corrupt := map[string]bool{}
	ids, err := s.checkpoints.IDs()
	if err != nil {
		return fmt.Errorf("listing checkpoints: %w", err)
	}
	for _, id := range ids {
		cp, err := s.checkpoints.Load(id)
		if err != nil {
			if errors.Is(err, checkpoint.ErrCorrupt) {
				corrupt[id] = true
			}
			if !errors.Is(err, os.ErrNotExist) {
				log.Error("skipping a sandbox checkpoint", "sandbox", id, "error", err)
			}
			continue
		}
		cps[id] = cp
	}

	summaries, err := inv.ListContainers(ctx, dockerspec.LabelType)
	if err != nil {
		return fmt.Errorf("listing Docker's containers: %w", err)
	}
	inspects, err := inspectAll(ctx, inv, summaries)
	if err != nil {
		return err
	}

	seenSandboxes := map[string]bool{}
	seenContainers := map[string]bool{}
	for _, in := range inspects {
		switch in.Config.Labels[dockerspec.LabelType] {
		case dockerspec.TypeSandbox:
			seenSandboxes[in.ID] = true
			s.refreshSandbox(in, cps[in.ID])
			if corrupt[in.ID] {
				s.store.UpdateSandbox(in.ID, func(sb *store.Sandbox) { sb.CheckpointCorrupt = true })
			}
		case dockerspec.TypeContainer:
			seenContainers[in.ID] = true
			s.refreshContainer(in)
		}
	}

	// Checkpoints whose pause container is gone.
	for id, cp := range cps {
		if seenSandboxes[id] {
			continue
		}
		if _, ok := s.store.Sandbox(id); !ok {
			s.store.PutSandbox(sandboxFromCheckpoint(cp))
		} else {
			s.store.UpdateSandbox(id, func(sb *store.Sandbox) { sb.ContainerGone, sb.Running, sb.NetworkReady = true, false, false })
		}
		if cp.Network != nil && cp.Network.State != checkpoint.StateDown {
			sb, _ := s.store.Sandbox(id)
			unlock := s.guard.locks.lock(id)
			if err := s.teardownNetwork(ctx, sb); err != nil {
				log.Error("tearing down the network of a sandbox whose pause container is gone", "sandbox", id, "error", err)
			} else {
				log.Info("tore down the network of a sandbox whose pause container is gone", "sandbox", id)
			}
			unlock()
		}
	}
	// Records of objects that no longer exist.
	for _, sb := range s.store.Sandboxes(nil) {
		if !seenSandboxes[sb.ID] && cps[sb.ID] == nil && !s.guard.runs.running(sb.Name) {
			s.store.DeleteSandbox(sb.ID)
		}
	}
	for _, c := range s.store.Containers(nil) {
		if !seenContainers[c.ID] && !s.guard.runs.running(c.Name) {
			s.store.DeleteContainer(c.ID)
		}
	}
	return nil
}

// inspectAll inspects the listed containers, a few at a time. Containers
// that vanish meanwhile are skipped. A panic in an inspect fails the whole
// recovery (which is retried) rather than leave that container out of it.
func inspectAll(ctx context.Context, inv Inventory, summaries []container.Summary) ([]container.InspectResponse, error) {
	var (
		mu     sync.Mutex // guards out and failed
		out    []container.InspectResponse
		failed error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, inspectParallelism)
	)
	for _, sum := range summaries {
		wg.Add(1)
		sem <- struct{}{}
		id := sum.ID
		panics.GoThen(ctx, panics.Recovery, func() error {
			in, err := inv.InspectContainer(ctx, id)
			if err != nil {
				if !errors.Is(err, errdefs.ErrNotFound) {
					logging.FromContext(ctx).Warn("inspecting a container", "id", id, "error", err)
				}
				return nil
			}
			if in.Config == nil {
				return nil
			}
			mu.Lock()
			out = append(out, in)
			mu.Unlock()
			return nil
		}, func(err error) {
			if err != nil {
				mu.Lock()
				failed = cmp.Or(failed, err)
				mu.Unlock()
			}
			<-sem
			wg.Done()
		})
	}
	wg.Wait()
	if failed != nil {
		return nil, fmt.Errorf("inspecting Docker's containers: %w", failed)
	}
	return out, nil
}

// refreshSandbox brings a sandbox's record in line with Docker's view.
// Docker-side facts (running, pid) are updated in place; a sandbox not yet
// indexed gets a full record, its network state from the checkpoint.
func (s *Service) refreshSandbox(in container.InspectResponse, cp *checkpoint.Sandbox) {
	fresh, err := dockerspec.SandboxFromInspect(in, s.cfg.RootDir)
	if err != nil {
		s.log.Warn("ignoring a pause container Berth cannot read", "id", in.ID, "error", err)
		return
	}
	if s.store.UpdateSandbox(in.ID, func(sb *store.Sandbox) {
		sb.Running, sb.Pid, sb.ContainerGone = fresh.Running, fresh.Pid, false
		switch {
		case !sb.Owned && cp == nil:
			// Another runtime set up its network: it is up while the
			// pause container runs.
			sb.NetworkReady = fresh.Running
			if fresh.Running && len(sb.IPs) == 0 && s.network.UsesCNI() && sb.Namespaces.GetNetwork() != runtimeapi.NamespaceMode_NODE {
				sb.IPs = s.network.CachedIPs(sb.ID)
				sb.NetNS = netnsIfRunning(sb.Pid)
			}
		case !fresh.Running:
			sb.NetworkReady = sb.NetworkReady && !s.network.UsesCNI()
		}
	}) {
		return
	}
	if s.guard.runs.running(fresh.Name) {
		return // RunPodSandbox is making it and will index it
	}
	s.completeSandbox(fresh, in, cp)
	s.store.PutSandbox(fresh)
}

// completeSandbox fills a new record's network fields.
func (s *Service) completeSandbox(sb *store.Sandbox, in container.InspectResponse, cp *checkpoint.Sandbox) {
	hostNet := sb.Namespaces.GetNetwork() == runtimeapi.NamespaceMode_NODE
	switch {
	case cp != nil && cp.Network != nil:
		sb.NetNS = cp.Network.NetNS
		sb.IPs = cp.Network.IPs
		sb.NetworkReady = cp.Network.State == checkpoint.StateUp
	case cp != nil:
		// No CNI network recorded: fine for host network and Docker-bridge
		// mode; otherwise RunPodSandbox stopped before setting it up.
		sb.NetworkReady = hostNet || !s.network.UsesCNI()
	case sb.Owned:
		// Created by this Berth, which died before writing the record: no
		// network was set up.
		sb.NetworkReady = hostNet
	default:
		// Another runtime's (cri-dockerd, dockershim) or another Berth's:
		// its network was set up by it.
		sb.NetworkReady = true
		if !hostNet && s.network.UsesCNI() && sb.Running {
			sb.IPs = s.network.CachedIPs(sb.ID)
			sb.NetNS = netnsIfRunning(sb.Pid)
		}
	}
	if !hostNet && !s.network.UsesCNI() {
		sb.IPs = dockerspec.BridgeIPs(in)
	}
	if !sb.Running && s.network.UsesCNI() {
		sb.NetworkReady = false
	}
}

// sandboxFromCheckpoint is the record of a sandbox whose pause container
// no longer exists: NOTREADY, but listed so kubelet can stop and remove it.
func sandboxFromCheckpoint(cp *checkpoint.Sandbox) *store.Sandbox {
	netMode := runtimeapi.NamespaceMode_POD
	if cp.HostNetwork {
		netMode = runtimeapi.NamespaceMode_NODE
	}
	sb := &store.Sandbox{
		ID:   cp.ID,
		Name: cp.Name,
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: cp.PodName, Namespace: cp.PodNamespace, Uid: cp.PodUID, Attempt: cp.Attempt,
		},
		Labels:         cp.Labels,
		Annotations:    cp.Annotations,
		RuntimeHandler: cp.RuntimeHandler,
		LogDirectory:   cp.LogDirectory,
		CreatedAt:      cp.CreatedAt,
		Namespaces:     &runtimeapi.NamespaceOption{Network: netMode},
		ContainerGone:  true,
		Owned:          true,
	}
	if sb.Labels == nil {
		sb.Labels = map[string]string{}
	}
	if sb.Annotations == nil {
		sb.Annotations = map[string]string{}
	}
	if cp.Network != nil {
		sb.IPs = cp.Network.IPs
	}
	return sb
}
