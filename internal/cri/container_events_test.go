package cri

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/store"
)

const (
	created = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	started = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	stopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	deleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

type hubFixture struct {
	t     *testing.T
	store *store.Store
	hub   *eventHub
	sub   *eventSub
}

func newHubFixture(t *testing.T) *hubFixture {
	return newHubFixtureSized(t, hubBuffer, subscriberBuffer, true)
}

// newHubFixtureSized is a hub with queues of these sizes, running in a
// goroutine of its own if run, else only when the test calls drain.
func newHubFixtureSized(t *testing.T, changes, subs int, run bool) *hubFixture {
	st := store.New()
	h := newEventHub(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.changesBuffer, h.subBuffer = changes, subs
	h.attach()
	f := &hubFixture{t: t, store: st, hub: h, sub: h.subscribe()}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go h.run(ctx)
	}
	return f
}

// drain does the hub's work in the test's goroutine: it handles the
// changes queued, then catches up if the index dropped some.
func (f *hubFixture) drain() {
	for {
		select {
		case c := <-f.hub.changes.C():
			f.hub.handle(c)
			continue
		default:
		}
		select {
		case <-f.hub.changes.Dropped():
			f.hub.catchUp(context.Background())
		default:
		}
		return
	}
}

type ev struct {
	id string
	t  runtimeapi.ContainerEventType
}

// expect reads the next events and compares them with want.
func (f *hubFixture) expect(want ...ev) []*runtimeapi.ContainerEventResponse {
	f.t.Helper()
	var got []*runtimeapi.ContainerEventResponse
	for range want {
		select {
		case e := <-f.sub.ch:
			got = append(got, e)
		case <-time.After(5 * time.Second):
			f.t.Fatalf("got %d events %v, want %v", len(got), summarize(got), want)
		}
	}
	if s := summarize(got); !equalEvents(s, want) {
		f.t.Fatalf("events %v, want %v", s, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].CreatedAt <= got[i-1].CreatedAt {
			f.t.Errorf("event timestamps not increasing: %d then %d", got[i-1].CreatedAt, got[i].CreatedAt)
		}
	}
	return got
}

// quiet checks that no further event comes.
func (f *hubFixture) quiet() {
	f.t.Helper()
	select {
	case e := <-f.sub.ch:
		f.t.Fatalf("unexpected event %v", summarize([]*runtimeapi.ContainerEventResponse{e}))
	case <-time.After(100 * time.Millisecond):
	}
}

func summarize(es []*runtimeapi.ContainerEventResponse) []ev {
	var out []ev
	for _, e := range es {
		out = append(out, ev{e.ContainerId, e.ContainerEventType})
	}
	return out
}

func equalEvents(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sandboxRecord(id string, running bool) *store.Sandbox {
	return &store.Sandbox{ID: id, Name: "k8s_POD_" + id, Running: running, NetworkReady: running,
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid-" + id}}
}

func containerRecord(id, sandbox string, state runtimeapi.ContainerState, startedAt int64) *store.Container {
	return &store.Container{ID: id, Name: "k8s_c_" + id, SandboxID: sandbox, State: state, StartedAt: startedAt,
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}
}

func TestEventsFollowALifecycle(t *testing.T) {
	f := newHubFixture(t)
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.expect(ev{"sb", created}, ev{"sb", started})

	f.store.PutContainer(containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_CREATED, 0))
	got := f.expect(ev{"c1", created})
	if got[0].PodSandboxStatus.GetMetadata().GetUid() != "uid-sb" || len(got[0].ContainersStatuses) != 1 {
		t.Errorf("CREATED event carries %v and %d container statuses", got[0].PodSandboxStatus, len(got[0].ContainersStatuses))
	}
	f.store.UpdateContainer("c1", func(c *store.Container) { c.State, c.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, 100 })
	got = f.expect(ev{"c1", started})
	if st := got[0].ContainersStatuses[0].State; st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("STARTED event has container state %v", st)
	}
	// An update that changes nothing events see.
	f.store.UpdateContainer("c1", func(c *store.Container) { c.User = &runtimeapi.LinuxContainerUser{Uid: 1} })
	f.quiet()
	f.store.UpdateContainer("c1", func(c *store.Container) { c.State = runtimeapi.ContainerState_CONTAINER_EXITED })
	f.expect(ev{"c1", stopped})
	f.store.DeleteContainer("c1")
	got = f.expect(ev{"c1", deleted})
	if len(got[0].ContainersStatuses) != 0 || got[0].PodSandboxStatus == nil {
		t.Errorf("DELETED event: %v", got[0])
	}

	f.store.UpdateSandbox("sb", func(sb *store.Sandbox) { sb.Running = false })
	f.expect(ev{"sb", stopped})
	f.store.DeleteSandbox("sb")
	got = f.expect(ev{"sb", deleted})
	if got[0].PodSandboxStatus.GetId() != "sb" {
		t.Errorf("the sandbox's DELETED event lacks its last status: %v", got[0].PodSandboxStatus)
	}
	f.quiet()
}

func TestEventsCatchUpWithChangesMissedMeanwhile(t *testing.T) {
	f := newHubFixture(t)
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.expect(ev{"sb", created}, ev{"sb", started})

	// First seen already exited (created, run and exited in a gap).
	f.store.PutContainer(containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_EXITED, 100))
	f.expect(ev{"c1", created}, ev{"c1", started}, ev{"c1", stopped})

	// Running, then a resync finds it running again with a new start time:
	// it stopped and started while Berth was not looking.
	f.store.PutContainer(containerRecord("c2", "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100))
	f.expect(ev{"c2", created}, ev{"c2", started})
	f.store.PutContainer(containerRecord("c2", "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 200))
	f.expect(ev{"c2", stopped}, ev{"c2", started})
	// …and exited with yet another start time.
	f.store.PutContainer(containerRecord("c2", "sb", runtimeapi.ContainerState_CONTAINER_EXITED, 300))
	f.expect(ev{"c2", stopped}, ev{"c2", started}, ev{"c2", stopped})

	// A container that failed to start: created and stopped, never started.
	f.store.PutContainer(containerRecord("c3", "sb", runtimeapi.ContainerState_CONTAINER_EXITED, 0))
	f.expect(ev{"c3", created}, ev{"c3", stopped})

	// A pause container restarted (Docker came back).
	f.store.UpdateSandbox("sb", func(sb *store.Sandbox) { sb.Running = false })
	f.expect(ev{"sb", stopped})
	f.store.UpdateSandbox("sb", func(sb *store.Sandbox) { sb.Running = true })
	f.expect(ev{"sb", started})
}

func TestEventsUseTheCurrentRecord(t *testing.T) {
	// Concurrent writers may notify out of order; the hub reads the index,
	// so a late notification of an older record emits nothing backwards.
	// The hub runs in this goroutine here (drain), to hand it that late
	// notification.
	f := newHubFixtureSized(t, hubBuffer, subscriberBuffer, false)
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.drain()
	f.expect(ev{"sb", created}, ev{"sb", started})
	c := containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100)
	f.store.PutContainer(c)
	f.drain()
	f.expect(ev{"c1", created}, ev{"c1", started})
	f.store.UpdateContainer("c1", func(c *store.Container) { c.State = runtimeapi.ContainerState_CONTAINER_EXITED })
	f.drain()
	f.expect(ev{"c1", stopped})
	f.hub.handle(store.Change{Kind: "container", ID: "c1", Container: c}) // stale: running
	f.quiet()
}

func TestSlowEventSubscriberIsDisconnected(t *testing.T) {
	f := newHubFixture(t)
	slow := f.hub.subscribe()
	for i := 0; i < subscriberBuffer+1; i++ {
		f.hub.publish(&runtimeapi.ContainerEventResponse{ContainerId: "x"})
		<-f.sub.ch // the fast subscriber keeps up
	}
	select {
	case <-slow.gone:
	case <-time.After(time.Second):
		t.Fatal("a subscriber that fell behind was not disconnected")
	}
	select {
	case <-f.sub.gone:
		t.Fatal("the subscriber that kept up was disconnected")
	default:
	}
}

// expectEach reads n events and checks each object's own sequence (a
// resync reports objects in no set order).
func (f *hubFixture) expectEach(want map[string][]runtimeapi.ContainerEventType) []*runtimeapi.ContainerEventResponse {
	f.t.Helper()
	n := 0
	for _, ts := range want {
		n += len(ts)
	}
	got := map[string][]runtimeapi.ContainerEventType{}
	var all []*runtimeapi.ContainerEventResponse
	for range n {
		select {
		case e := <-f.sub.ch:
			got[e.ContainerId] = append(got[e.ContainerId], e.ContainerEventType)
			all = append(all, e)
		case <-time.After(5 * time.Second):
			f.t.Fatalf("got %v, want %v", got, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		f.t.Fatalf("events %v, want %v", got, want)
	}
	return all
}

func TestTheHubResyncsWhenTheIndexDropsChanges(t *testing.T) {
	f := newHubFixtureSized(t, 4, subscriberBuffer, false)
	before := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("event_hub"))
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.store.PutContainer(containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100))
	f.drain()
	f.expect(ev{"sb", created}, ev{"sb", started}, ev{"c1", created}, ev{"c1", started})

	// A burst the hub has no room for: four changes fit, three do not.
	for _, id := range []string{"c2", "c3", "c4", "c5", "c6"} {
		f.store.PutContainer(containerRecord(id, "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100))
	}
	f.store.UpdateContainer("c1", func(c *store.Container) { c.State = runtimeapi.ContainerState_CONTAINER_EXITED })
	f.store.DeleteContainer("c1")
	if n := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("event_hub")) - before; n != 3 {
		t.Errorf("berth_events_dropped_total{subscriber=event_hub} rose by %v, want 3", n)
	}
	f.drain()
	all := f.expectEach(map[string][]runtimeapi.ContainerEventType{
		"c1": {stopped, deleted},
		"c2": {created, started}, "c3": {created, started}, "c4": {created, started},
		"c5": {created, started}, "c6": {created, started},
	})
	for _, e := range all {
		if e.PodSandboxStatus.GetMetadata().GetUid() != "uid-sb" {
			t.Errorf("%s %s without its pod's status", e.ContainerId, e.ContainerEventType)
		}
	}
	f.quiet()

	// A sandbox and a container removed while changes were dropped, after
	// queued changes of another (restarted) container of the sandbox.
	for i := range 4 {
		f.store.UpdateContainer("c3", func(c *store.Container) { c.StartedAt = int64(200 + i) })
	}
	f.store.DeleteContainer("c2")
	f.store.DeleteSandbox("sb")
	f.drain()
	all = f.expectEach(map[string][]runtimeapi.ContainerEventType{
		"c3": {stopped, started},
		"c2": {stopped, deleted},
		"sb": {stopped, deleted},
	})
	for _, e := range all {
		if e.PodSandboxStatus.GetId() != "sb" {
			t.Errorf("%s %s without its pod's last status", e.ContainerId, e.ContainerEventType)
		}
	}
}

func TestAPanicHandlingAChangeResyncsTheHub(t *testing.T) {
	f := newHubFixture(t)
	var once sync.Once
	restore := panics.SetHook(func(where string) {
		if where == panics.EventHub {
			once.Do(func() { panic("injected") })
		}
	})
	defer restore()
	before := testutil.ToFloat64(metrics.Panics.WithLabelValues(panics.EventHub))
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.expect(ev{"sb", created}, ev{"sb", started})
	if n := testutil.ToFloat64(metrics.Panics.WithLabelValues(panics.EventHub)) - before; n != 1 {
		t.Errorf("berth_panics_total{where=event_hub} rose by %v, want 1", n)
	}
	f.store.PutContainer(containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_CREATED, 0))
	f.expect(ev{"c1", created})
}

// stalledStream is a GetContainerEvents client that stops reading: its
// Send blocks until released.
type stalledStream struct {
	grpc.ServerStream
	ctx     context.Context
	release chan struct{}
	sent    atomic.Int32
}

func (s *stalledStream) Context() context.Context     { return s.ctx }
func (s *stalledStream) SendHeader(metadata.MD) error { return nil }
func (s *stalledStream) Send(*runtimeapi.ContainerEventResponse) error {
	<-s.release
	s.sent.Add(1)
	return nil
}

func TestAStreamThatStopsReadingEndsWithResourceExhausted(t *testing.T) {
	f := newHubFixture(t)
	f.hub.subBuffer = 4 // the stream's; the fixture's reader has the default
	svc := &Service{events: eventFeed{hub: f.hub}}
	stream := &stalledStream{ctx: context.Background(), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- svc.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream) }()
	// Wait for the stream's subscription (the fixture's own is the other).
	for {
		f.hub.mu.Lock()
		n := len(f.hub.subs)
		f.hub.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	before := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("GetContainerEvents"))
	f.store.PutSandbox(sandboxRecord("sb", true))
	for i := range 4 {
		f.store.PutContainer(containerRecord(fmt.Sprint("c", i), "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100))
	}
	// 10 events: one blocks in Send, four wait in the buffer, the rest
	// do not fit. The reading subscriber keeps up.
	for range 10 {
		<-f.sub.ch
	}
	close(stream.release)
	err := <-done
	if status.Code(errdefs.ToGRPC(err)) != codes.ResourceExhausted || !strings.Contains(err.Error(), "events were dropped") ||
		!strings.Contains(err.Error(), "relist") {
		t.Errorf("the stream ended with %v, want ResourceExhausted saying events were dropped and to relist", err)
	}
	if n := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("GetContainerEvents")) - before; n != 1 {
		t.Errorf("berth_events_dropped_total{subscriber=GetContainerEvents} rose by %v, want 1 (one disconnect)", n)
	}
	select {
	case <-f.sub.gone:
		t.Error("the subscriber that kept up was disconnected")
	default:
	}
}
