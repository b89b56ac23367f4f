package cri

import (
	"testing"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The event watcher inspects a container after an event without the
// container's lock, so the inspect can be older than what StartContainer or
// StopContainer has since recorded. Such a stale view must not undo the
// record; a newer run must replace it.
func TestWatcherKeepsTheNewerRecord(t *testing.T) {
	s, _ := cleanupService(t, newFakeEngine(t.TempDir()), &fakeNetwork{})
	id, root := id64('w'), s.cfg.RootDir
	pod := podConfig("watched", false)
	exited := berthContainer(t, id, root, id64('p'), pod, "app", false)
	running := berthContainer(t, id, root, id64('p'), pod, "app", true)
	created := berthContainer(t, id, root, id64('p'), pod, "app", false)
	created.State = &container.State{Status: container.StateCreated, StartedAt: "0001-01-01T00:00:00Z", FinishedAt: "0001-01-01T00:00:00Z"}
	restarted := berthContainer(t, id, root, id64('p'), pod, "app", true)
	restarted.State.StartedAt = "2026-01-02T03:06:00Z" // after the first run ended

	steps := []struct {
		what string
		in   container.InspectResponse
		want runtimeapi.ContainerState
	}{
		{"created", created, runtimeapi.ContainerState_CONTAINER_CREATED},
		{"started", running, runtimeapi.ContainerState_CONTAINER_RUNNING},
		{"a created view after the start", created, runtimeapi.ContainerState_CONTAINER_RUNNING},
		{"stopped", exited, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"a running view of the ended run", running, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"a created view after the exit", created, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"a new run, started by Docker", restarted, runtimeapi.ContainerState_CONTAINER_RUNNING},
	}
	for _, st := range steps {
		s.refreshContainer(st.in)
		c, ok := s.store.Container(id)
		if !ok {
			t.Fatalf("%s: the container is not indexed", st.what)
		}
		if c.State != st.want {
			t.Errorf("%s: state %v, want %v", st.what, c.State, st.want)
		}
	}
}
