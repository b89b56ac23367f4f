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
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/panics"
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
// Nothing is dropped silently. The index drops a change the hub has no
// room for (it must not block the index's writers); it then counts the
// drop, logs it and tells the hub, which resyncs: it compares what it last
// reported of every object with the index, as it does for one object on
// each change, so every transition it missed is still reported, late,
// and no stream ends. A panic handling a change resyncs the same way.
//
// Each subscriber (a GetContainerEvents stream) has a bounded buffer; one
// that falls behind cannot be resynced in the stream (events are a
// history, not a state), so it is disconnected with ResourceExhausted,
// saying that events were dropped and to relist, and counted in
// berth_events_dropped_total{subscriber="GetContainerEvents"}, rather than
// allowed to block the hub or miss events unawares. kubelet reads every
// stream end alike (pkg/kubelet/pleg/evented.go): 1.37 retries at once and
// keeps its 1 s relist, which catches what it missed; 1.26 to 1.32 relist
// at once, then retry. Each kubelet gives up the stream after its fifth
// failure (eventedPlegMaxStreamRetries, never reset), which is why the
// hub's own overflow resyncs instead of ending streams.

const (
	// hubBuffer is the hub's queue of index changes, sized for the burst
	// of a full resync of a busy node.
	hubBuffer = 8192
	// subscriberBuffer is how many events a GetContainerEvents stream may
	// fall behind before it is disconnected.
	subscriberBuffer = 1024
)

// eventHub turns index changes into container events and fans them out.
type eventHub struct {
	store *store.Store
	log   *slog.Logger
	// changesBuffer and subBuffer size the hub's queue and each stream's
	// (hubBuffer and subscriberBuffer; tests make them small).
	changesBuffer, subBuffer int
	changes                  *store.Subscription

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
	// sandboxID is a container's sandbox; last is a sandbox's latest
	// record. A resync finding the object gone reports its DELETED event
	// with them.
	sandboxID string
	last      *store.Sandbox
}

// eventSub is one GetContainerEvents stream.
type eventSub struct {
	ch   chan *runtimeapi.ContainerEventResponse
	gone chan struct{} // closed when the hub disconnects it
}

func newEventHub(st *store.Store, log *slog.Logger) *eventHub {
	return &eventHub{
		store:         st,
		log:           log,
		changesBuffer: hubBuffer,
		subBuffer:     subscriberBuffer,
		subs:          map[*eventSub]struct{}{},
		known:         map[string]objectState{},
	}
}

// attach subscribes the hub to the index. It must happen before the index
// is first filled (Recover), so that the hub knows every object; Start
// does it, then runs run.
func (h *eventHub) attach() {
	h.changes = h.store.Subscribe("event_hub", h.changesBuffer)
}

// run processes the index's changes until ctx ends.
func (h *eventHub) run(ctx context.Context) {
	defer h.store.Unsubscribe(h.changes)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.changes.Dropped():
			h.log.Warn("container events: the index dropped changes for the hub; resyncing the hub with the index")
			h.catchUp(ctx)
		case c := <-h.changes.C():
			if err := h.handleSafely(ctx, c); err != nil {
				h.catchUp(ctx)
			}
		}
	}
}

// handleSafely is handle with a panic returned as an error.
func (h *eventHub) handleSafely(ctx context.Context, c store.Change) error {
	return panics.Call(ctx, panics.EventHub, func() error { h.handle(c); return nil })
}

// catchUp handles the changes queued, then resyncs: after changes were
// dropped (or one was lost to a panic), an object's removal may be among
// them, and a queued change of that object would otherwise report it
// anew (handle reports what a change saw of an object removed since, as
// its removal's own change normally follows). Changes dropped after the
// Dropped signal was taken signal it again, so nothing slips between.
func (h *eventHub) catchUp(ctx context.Context) {
	for n := len(h.changes.C()); n > 0; n-- {
		_ = h.handleSafely(ctx, <-h.changes.C()) // the resync covers a panic
	}
	h.resync(ctx)
}

// resync emits what the hub missed: it compares what it last reported of
// every object, and every object the index has, with the index now.
func (h *eventHub) resync(ctx context.Context) {
	err := panics.Call(ctx, panics.EventHub, func() error {
		seen := map[string]bool{}
		// Sandboxes first: a container's events carry its pod's status.
		for _, sb := range h.store.Sandboxes(nil) {
			seen[sb.ID] = true
			h.handle(store.Change{Kind: "sandbox", ID: sb.ID})
		}
		for _, c := range h.store.Containers(nil) {
			seen[c.ID] = true
			h.handle(store.Change{Kind: "container", ID: c.ID})
		}
		// Gone meanwhile: containers first, while their sandbox is known.
		var goneSandboxes []string
		for id, st := range h.known {
			switch {
			case seen[id]:
			case st.sandbox:
				goneSandboxes = append(goneSandboxes, id)
			default:
				h.handle(store.Change{Kind: "container", ID: id, Deleted: true})
			}
		}
		for _, id := range goneSandboxes {
			h.handle(store.Change{Kind: "sandbox", ID: id, Deleted: true})
		}
		return nil
	})
	if err != nil {
		// What it missed now waits for the object's next change.
		h.log.Error("container events: resyncing the hub with the index", "error", err)
	}
}

func (h *eventHub) subscribe() *eventSub {
	sub := &eventSub{ch: make(chan *runtimeapi.ContainerEventResponse, h.subBuffer), gone: make(chan struct{})}
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
			metrics.EventsDropped.WithLabelValues("GetContainerEvents").Inc()
			h.log.Warn("disconnecting a GetContainerEvents client that fell behind; it must relist", "buffered", cap(sub.ch))
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
		sandboxID := h.known[c.ID].sandboxID
		switch {
		case cur != nil:
			sandboxID = cur.SandboxID
		case c.Container != nil:
			sandboxID = c.Container.SandboxID
		}
		h.transition(c.ID, false, ok, containerRun(cur), func(t runtimeapi.ContainerEventType, ts int64) {
			h.publish(h.event(c.ID, t, ts, sandboxID, nil))
		})
		if st, ok := h.known[c.ID]; ok {
			st.sandboxID = sandboxID
			h.known[c.ID] = st
		}
	case "sandbox":
		cur, ok := h.store.Sandbox(c.ID)
		if !ok && !c.Deleted && c.Sandbox != nil {
			cur, ok = c.Sandbox, true
		}
		last := cur
		if last == nil {
			last = c.Sandbox // deleted: its last record
		}
		if last == nil {
			last = h.known[c.ID].last // deleted, found by a resync
		}
		h.transition(c.ID, true, ok, sandboxRun(cur), func(t runtimeapi.ContainerEventType, ts int64) {
			h.publish(h.event(c.ID, t, ts, c.ID, last))
		})
		if st, ok := h.known[c.ID]; ok {
			st.last = last
			h.known[c.ID] = st
		}
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
// DELETED when it is gone (after STOPPED if it was last reported running).
func (h *eventHub) transition(id string, sandbox, exists bool, now run, emit func(runtimeapi.ContainerEventType, int64)) {
	prev, known := h.known[id]
	send := func(t runtimeapi.ContainerEventType) { emit(t, h.timestamp()) }
	if !exists {
		if known {
			delete(h.known, id)
			if prev.started && !prev.stopped {
				// Gone while reported running (removed before its
				// exit was seen, or while events were missed): it
				// stopped first, and STOPPED is what kubelet acts on.
				send(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
			}
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
	} else if sb == nil {
		sb = h.known[sandboxID].last // removed before its container's event
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
	sub := s.events.hub.subscribe()
	defer s.events.hub.unsubscribe(sub)
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
			return fmt.Errorf("container events were dropped: the client fell more than %d events behind and was disconnected; relist and reconnect: %w",
				cap(sub.ch), errdefs.ErrResourceExhausted)
		case ev := <-sub.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
