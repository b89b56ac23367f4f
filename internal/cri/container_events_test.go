package cri

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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
	st := store.New()
	h := newEventHub(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st.Subscribe(h.changes)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go h.run(ctx)
	return &hubFixture{t: t, store: st, hub: h, sub: h.subscribe()}
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
	f := newHubFixture(t)
	f.store.PutSandbox(sandboxRecord("sb", true))
	f.expect(ev{"sb", created}, ev{"sb", started})
	c := containerRecord("c1", "sb", runtimeapi.ContainerState_CONTAINER_RUNNING, 100)
	f.store.PutContainer(c)
	f.expect(ev{"c1", created}, ev{"c1", started})
	f.store.UpdateContainer("c1", func(c *store.Container) { c.State = runtimeapi.ContainerState_CONTAINER_EXITED })
	f.expect(ev{"c1", stopped})
	f.hub.changes <- store.Change{Kind: "container", ID: "c1", Container: c} // stale: running
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
