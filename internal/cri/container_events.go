package cri

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// Container events for kubelet's evented PLEG.
//
// Berth already has one subscription to Docker's event stream (watch.go);
// it keeps the index (internal/store) current, and after the stream breaks
// (Docker restarted) it resyncs the index with Docker. The hub derives
// CRI events from the index's changes rather than from Docker's events:
// it remembers the last state it reported for every container and sandbox
// and, on each change, compares it with the index's current record. So an
// event is emitted for whatever changed, however Berth learnt of it: a
// Docker event, Berth's own call, or a resync that found a container
// stopped or removed while Berth was disconnected. Comparing with the
// current record (not the change's) also makes out-of-order notifications
// from concurrent writers harmless.
//
// Each subscriber (a GetContainerEvents stream) has a bounded buffer; one
// that falls behind is disconnected (and told so) rather than allowed to
// block the hub or make it drop events silently: kubelet then reconnects
// and relists.

const (
	// hubBuffer is the hub's queue of index changes. The store drops
	// changes a subscriber has no room for, so it is sized for the
	// burst of a full resync of a busy node.
	hubBuffer = 8192
	// subscriberBuffer is how many events a GetContainerEvents stream may
	// fall behind before it is disconnected.
	subscriberBuffer = 1024
)

// eventHub turns index changes into container events and fans them out.
type eventHub struct {
	store   *store.Store
	log     *slog.Logger
	changes chan store.Change

	mu   sync.Mutex // guards subs
	subs map[*eventSub]struct{}

	// Owned by the run goroutine.
	known  map[string]objectState
	lastTS int64
}

// objectState is what the hub last reported of one container or sandbox.
type objectState struct {
	sandbox bool
	// started is true once a STARTED event was sent for the current run,
	// stopped once a STOPPED event was.
	started, stopped bool
	// startedAt tells runs apart: a container that restarted while Berth
	// was disconnected has a new start time.
	startedAt int64
}

// eventSub is one GetContainerEvents stream.
type eventSub struct {
	ch   chan *runtimeapi.ContainerEventResponse
	gone chan struct{} // closed when the hub disconnects it
}

func newEventHub(st *store.Store, log *slog.Logger) *eventHub {
	return &eventHub{
		store:   st,
		log:     log,
		changes: make(chan store.Change, hubBuffer),
		subs:    map[*eventSub]struct{}{},
		known:   map[string]objectState{},
	}
}

// run subscribes to the index and processes its changes until ctx ends. It
// must subscribe before the index is first filled (Recover), so that it
// knows every object; Start does that.
func (h *eventHub) run(ctx context.Context) {
	defer h.store.Unsubscribe(h.changes)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-h.changes:
			h.handle(c)
		}
	}
}

func (h *eventHub) subscribe() *eventSub {
	sub := &eventSub{ch: make(chan *runtimeapi.ContainerEventResponse, subscriberBuffer), gone: make(chan struct{})}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	return sub
}

func (h *eventHub) unsubscribe(sub *eventSub) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// publish hands ev to every subscriber without blocking; a subscriber
// whose buffer is full is disconnected.
func (h *eventHub) publish(ev *runtimeapi.ContainerEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		select {
		case sub.ch <- ev:
		default:
			delete(h.subs, sub)
			close(sub.gone)
			h.log.Warn("disconnecting a GetContainerEvents client that fell behind", "buffered", cap(sub.ch))
		}
	}
}

// handle compares the current record of the changed object with what was
// last reported, and emits the events in between.
func (h *eventHub) handle(c store.Change) {
	switch c.Kind {
	case "container":
		cur, ok := h.store.Container(c.ID)
		if !ok && !c.Deleted && c.Container != nil {
			// Removed since this change was made: report what the change
			// saw; the deletion's own change follows.
			cur, ok = c.Container, true
		}
		var sandboxID string
		switch {
		case cur != nil:
			sandboxID = cur.SandboxID
		case c.Container != nil:
			sandboxID = c.Container.SandboxID
		}
		h.transition(c.ID, false, ok, containerRun(cur), func(t runtimeapi.ContainerEventType, ts int64) {
			h.publish(h.event(c.ID, t, ts, sandboxID, nil))
		})
	case "sandbox":
		cur, ok := h.store.Sandbox(c.ID)
		if !ok && !c.Deleted && c.Sandbox != nil {
			cur, ok = c.Sandbox, true
		}
		h.transition(c.ID, true, ok, sandboxRun(cur), func(t runtimeapi.ContainerEventType, ts int64) {
			last := cur
			if last == nil {
				last = c.Sandbox // deleted: its last record
			}
			h.publish(h.event(c.ID, t, ts, c.ID, last))
		})
	}
}

// run is an object's lifecycle as events see it.
type run struct {
	started   bool  // it has run (or runs)
	stopped   bool  // it has exited
	startedAt int64 // when the current run started
}

func containerRun(c *store.Container) run {
	if c == nil {
		return run{}
	}
	switch c.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return run{started: true, startedAt: c.StartedAt}
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return run{started: c.StartedAt > 0, stopped: true, startedAt: c.StartedAt}
	}
	return run{}
}

func sandboxRun(sb *store.Sandbox) run {
	if sb == nil {
		return run{}
	}
	if sb.Running && !sb.ContainerGone {
		return run{started: true}
	}
	// A stopped pause container (or one that is gone but whose sandbox
	// is still listed): the sandbox is stopped.
	return run{stopped: true}
}

// transition emits the events that take an object from what was last
// reported to its current run: CREATED for a new object, STARTED and
// STOPPED as it runs and exits (STOPPED then STARTED for a new run), and
// DELETED when it is gone.
func (h *eventHub) transition(id string, sandbox, exists bool, now run, emit func(runtimeapi.ContainerEventType, int64)) {
	prev, known := h.known[id]
	send := func(t runtimeapi.ContainerEventType) { emit(t, h.timestamp()) }
	if !exists {
		if known {
			delete(h.known, id)
			send(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
		}
		return
	}
	if !known {
		prev = objectState{sandbox: sandbox}
		send(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	}
	if now.started && prev.started && now.startedAt != prev.startedAt {
		// A new run of a container since the last report (it restarted
		// while Berth was disconnected).
		if !prev.stopped {
			send(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
		}
		prev.started, prev.stopped = false, false
	}
	if now.started && (!prev.started || prev.stopped && !now.stopped) {
		// Started, or (a sandbox's pause container) started again.
		send(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
		prev.started, prev.stopped, prev.startedAt = true, false, now.startedAt
	}
	if now.stopped && !prev.stopped {
		send(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
		prev.stopped = true
	}
	h.known[id] = prev
}

// timestamp is now, strictly later than the previous event's: kubelet
// keeps a pod's status only if it is newer than the one it has.
func (h *eventHub) timestamp() int64 {
	ts := time.Now().UnixNano()
	if ts <= h.lastTS {
		ts = h.lastTS + 1
	}
	h.lastTS = ts
	return ts
}

// event builds one event with the statuses evented PLEG caches: the pod
// sandbox's and every container's of the pod, as the index has them now.
// sb is the sandbox record to use when it is no longer indexed.
func (h *eventHub) event(id string, t runtimeapi.ContainerEventType, ts int64, sandboxID string, sb *store.Sandbox) *runtimeapi.ContainerEventResponse {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: t, CreatedAt: ts}
	if cur, ok := h.store.Sandbox(sandboxID); ok {
		sb = cur
	}
	if sb != nil {
		ev.PodSandboxStatus = dockerspec.PodSandboxStatus(sb)
	}
	for _, c := range h.store.ContainersOf(sandboxID) {
		ev.ContainersStatuses = append(ev.ContainersStatuses, dockerspec.ContainerStatusToCRI(c))
	}
	return ev
}

// GetContainerEvents streams container and sandbox lifecycle events until
// the client goes away. It sends the response headers once subscribed, so
// a client can wait for them before making changes it wants to see. A
// client that falls more than subscriberBuffer events behind is
// disconnected with ResourceExhausted.
func (s *Service) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ctx := stream.Context()
	sub := s.events.subscribe()
	defer s.events.unsubscribe(sub)
	// Headers now tell the client it is subscribed: every change from
	// here on reaches it.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	logging.FromContext(ctx).Debug("container events client connected")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.gone:
			return fmt.Errorf("the client fell more than %d events behind and was disconnected; reconnect and relist: %w",
				subscriberBuffer, errdefs.ErrResourceExhausted)
		case ev := <-sub.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
