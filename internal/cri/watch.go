package cri

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/hostinfo"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/store"
)

// Watch keeps the index current from Docker's event stream until ctx ends.
// When the stream breaks (Docker restarted or went away) it waits for
// Docker, resyncs fully, and resumes from the last event it saw, so Docker
// replays what it still has of the gap (nothing, if it restarted: the
// resync is what catches up then). GetContainerEvents reports whatever the
// resync changed in the index (container_events.go).
func (s *Service) Watch(ctx context.Context) {
	since := s.events.since
	for ctx.Err() == nil {
		streamCtx, endStream := context.WithCancel(ctx)
		msgs, errs := s.docker.ContainerEvents(streamCtx, since, dockerspec.LabelType)
	stream:
		for {
			select {
			case <-ctx.Done():
				endStream()
				return
			case m := <-msgs:
				if m.TimeNano > 0 {
					since = time.Unix(0, m.TimeNano)
				}
				// A panic handling one event leaves the index short
				// of that change: resync, as after a broken stream.
				if err := panics.Call(ctx, panics.EventWatch, func() error { s.handleEvent(ctx, m); return nil }); err != nil {
					s.log.Warn("handling a Docker event failed; resyncing", "action", m.Action, "id", m.Actor.ID, "error", err)
					break stream
				}
			case err := <-errs:
				if ctx.Err() == nil {
					s.log.Warn("Docker's event stream broke; resyncing once Docker answers", "error", err)
				}
				break stream
			}
		}
		endStream()
		s.resyncUntilDone(ctx)
	}
}

// resyncUntilDone waits for Docker and resyncs, again and again until a
// resync succeeds: what changed while the stream was down (a container that
// died while Docker restarted) is caught only by it, and a new stream may
// well connect before Docker answers a list (or to a daemon that restarted
// meanwhile).
func (s *Service) resyncUntilDone(ctx context.Context) {
	for ctx.Err() == nil {
		for ctx.Err() == nil && !s.docker.Health().Ready {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		err := panics.Call(ctx, panics.EventWatch, func() error { return s.resync(ctx) })
		if err == nil {
			s.log.Info("index resynced with Docker after the event stream broke")
			return
		}
		s.log.Warn("resync after the event stream broke; retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// ignoredActions change nothing Berth indexes.
func ignoredAction(action string) bool {
	for _, p := range []string{"exec_", "attach", "detach", "top", "resize", "export", "commit", "copy", "archive-path", "extract-to-dir", "health_status"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

func (s *Service) handleEvent(ctx context.Context, m events.Message) {
	action := string(m.Action)
	if ignoredAction(action) || m.Actor.ID == "" {
		return
	}
	kind := m.Actor.Attributes[dockerspec.LabelType]
	if action == "destroy" {
		s.gone(kind, m.Actor.ID)
		return
	}
	var known bool
	switch kind {
	case dockerspec.TypeSandbox:
		_, known = s.store.Sandbox(m.Actor.ID)
	case dockerspec.TypeContainer:
		_, known = s.store.Container(m.Actor.ID)
	default:
		return
	}
	if !known {
		// Not indexed yet. The RunPodSandbox or CreateContainer making
		// it (Docker names it in the event) indexes it or undoes it
		// itself; anything else is added from one inspect under its
		// lock. Each pod start makes two such events: inspecting for
		// them only loaded Docker while it started the pod.
		if s.guard.runs.running(strings.TrimPrefix(m.Actor.Attributes["name"], "/")) {
			return
		}
		if kind == dockerspec.TypeSandbox {
			s.addLocked(ctx, m.Actor.ID, func(in container.InspectResponse) { s.refreshSandbox(in, s.loadCheckpoint(in.ID)) })
		} else {
			s.addLocked(ctx, m.Actor.ID, s.refreshContainer)
		}
		return
	}
	in, err := s.docker.InspectContainer(ctx, m.Actor.ID)
	if errors.Is(err, errdefs.ErrNotFound) {
		s.gone(kind, m.Actor.ID)
		return
	}
	if err != nil || in.Config == nil {
		s.log.Warn("inspecting a container after a Docker event", "id", m.Actor.ID, "action", action, "error", err)
		return
	}
	if kind == dockerspec.TypeSandbox {
		s.refreshSandbox(in, s.loadCheckpoint(in.ID))
	} else {
		s.refreshContainer(in)
	}
}

// addLocked indexes an object not yet known, under its id's lock and from
// a fresh inspect, so a Remove or a failing RunPodSandbox holding the lock
// cannot be undone by a late event. While someone holds the lock, the
// holder indexes the object or removes it: the watcher leaves it to them
// rather than wait (it would hold up every later event).
func (s *Service) addLocked(ctx context.Context, id string, add func(container.InspectResponse)) {
	unlock, ok := s.guard.locks.tryLock(id)
	if !ok {
		return
	}
	defer unlock()
	in, err := s.docker.InspectContainer(ctx, id)
	if err != nil || in.Config == nil {
		return
	}
	add(in)
}

func (s *Service) loadCheckpoint(id string) *checkpoint.Sandbox {
	cp, err := s.checkpoints.Load(id)
	if err != nil {
		return nil
	}
	return cp
}

// gone handles a container that no longer exists in Docker.
func (s *Service) gone(kind, id string) {
	switch kind {
	case dockerspec.TypeSandbox:
		if s.loadCheckpoint(id) != nil {
			s.store.UpdateSandbox(id, func(sb *store.Sandbox) { sb.ContainerGone, sb.Running, sb.NetworkReady = true, false, false })
		} else {
			s.store.DeleteSandbox(id)
		}
	case dockerspec.TypeContainer:
		s.store.DeleteContainer(id)
	}
}

// refreshContainer brings a container's record in line with Docker's view,
// and keeps its log forwarding in step: following while it runs, drained
// when it exits.
func (s *Service) refreshContainer(in container.InspectResponse) {
	c, err := dockerspec.ContainerFromInspect(in, s.cfg.RootDir)
	if err != nil {
		s.log.Warn("ignoring a container Berth cannot read", "id", in.ID, "error", err)
		return
	}
	old, known := s.store.Container(in.ID)
	if !known && s.guard.runs.running(c.Name) {
		return // CreateContainer is making it and will index it
	}
	if known && staleRun(old, c) {
		return
	}
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && c.Pid > 0 {
		if u, err := hostinfo.ProcessUser(c.Pid); err == nil {
			c.User = &runtimeapi.LinuxContainerUser{Uid: u.UID, Gid: u.GID, SupplementalGroups: u.Groups}
		}
	} else if known {
		c.User = old.User
	}
	if known && old.Resources != nil && c.Resources != nil {
		// Limits Berth wrote itself are not in Docker's view.
		c.Resources.HugepageLimits, c.Resources.Unified = old.Resources.HugepageLimits, old.Resources.Unified
	}
	s.store.PutContainer(c)
	s.syncLogs(c)
}

// staleRun reports whether c, read from Docker, is older than the record
// old: a container that has started shown as never started, or a run old
// has seen end shown as still going. The watcher inspects after an event
// without the container's lock, so a StartContainer or StopContainer can
// record what it did between that inspect and this refresh. A container
// never returns to created, and a run, once ended, stays ended: a new run
// (Docker restarting it behind Berth's back) has a later start.
func staleRun(old, c *store.Container) bool {
	switch c.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return old.State == runtimeapi.ContainerState_CONTAINER_RUNNING || old.State == runtimeapi.ContainerState_CONTAINER_EXITED
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return old.State == runtimeapi.ContainerState_CONTAINER_EXITED && c.StartedAt <= old.StartedAt
	}
	return false
}

// syncLogs starts or ends a container's log forwarding to match its state.
// Only containers this Berth created are forwarded: those adopted from
// cri-dockerd keep the log file it made (a symlink to Docker's json file),
// and another Berth on the same Docker (another --root-dir) forwards its own.
func (s *Service) syncLogs(c *store.Container) {
	if s.logs == nil || c.LogPath == "" || c.DockerLogPath == "" || !c.Owned {
		return
	}
	switch c.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		id := c.ID
		running := func() bool {
			cur, ok := s.store.Container(id)
			return ok && cur.State == runtimeapi.ContainerState_CONTAINER_RUNNING
		}
		if err := s.logs.Follow(c.ID, c.DockerLogPath, c.LogPath, running); err != nil {
			s.log.Error("forwarding a container's log", "id", c.ID, "path", c.LogPath, "error", err)
		}
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		// Forward what the container wrote before it exited (also after a
		// Berth restart), then stop.
		id := c.ID
		if err := s.logs.Follow(c.ID, c.DockerLogPath, c.LogPath, func() bool { return false }); err != nil {
			s.log.Error("forwarding a container's log", "id", c.ID, "path", c.LogPath, "error", err)
		}
		s.logs.Exited(id)
	}
}

// refreshContainerByID re-reads one container from Docker into the index.
func (s *Service) refreshContainerByID(ctx context.Context, id string) {
	in, err := s.docker.InspectContainer(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		s.gone(dockerspec.TypeContainer, id)
		return
	}
	if err != nil || in.Config == nil {
		s.log.Warn("inspecting a container", "id", id, "error", err)
		return
	}
	s.refreshContainer(in)
}
