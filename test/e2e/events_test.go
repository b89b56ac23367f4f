package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

const (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// eventStream is a GetContainerEvents subscription through kubelet's
// client (k8s.io/cri-client), as evented PLEG makes it.
type eventStream struct {
	ch   chan *runtimeapi.ContainerEventResponse
	errc chan error
	// seen keeps every event received, for failure messages.
	seen []string
}

// watchEvents subscribes and returns once Berth has (it sends the
// response headers then).
func watchEvents(t *testing.T, b *framework.Berth) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &eventStream{ch: make(chan *runtimeapi.ContainerEventResponse, 1000), errc: make(chan error, 1)}
	subscribed := make(chan struct{})
	go func() {
		s.errc <- b.Runtime.GetContainerEvents(ctx, s.ch, func(c runtimeapi.RuntimeService_GetContainerEventsClient) {
			_, _ = c.Header()
			close(subscribed)
		})
	}()
	t.Cleanup(cancel)
	select {
	case <-subscribed:
	case err := <-s.errc:
		t.Fatalf("GetContainerEvents: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("GetContainerEvents did not connect within 30s")
	}
	return s
}

// want is an expected event.
type want struct {
	id string
	t  runtimeapi.ContainerEventType
}

// expect reads events until it has seen every wanted one. For each object
// the events must come exactly in the order given (the order between
// objects is free); events of other objects are ignored. It returns the
// matched events.
func (s *eventStream) expect(t *testing.T, timeout time.Duration, wants ...want) []*runtimeapi.ContainerEventResponse {
	t.Helper()
	queue := map[string][]runtimeapi.ContainerEventType{}
	for _, w := range wants {
		queue[w.id] = append(queue[w.id], w.t)
	}
	left := len(wants)
	var got []*runtimeapi.ContainerEventResponse
	deadline := time.After(timeout)
	for left > 0 {
		select {
		case ev := <-s.ch:
			s.seen = append(s.seen, fmt.Sprintf("%.12s:%v", ev.ContainerId, ev.ContainerEventType))
			q, ok := queue[ev.ContainerId]
			if !ok {
				continue
			}
			if len(q) == 0 || q[0] != ev.ContainerEventType {
				t.Fatalf("event %v for %.12s, want %v next; events so far: %v", ev.ContainerEventType, ev.ContainerId, q, s.seen)
			}
			queue[ev.ContainerId] = q[1:]
			got = append(got, ev)
			left--
		case err := <-s.errc:
			t.Fatalf("the event stream ended: %v; events so far: %v", err, s.seen)
		case <-deadline:
			t.Fatalf("still waiting for %v after %v; events so far: %v", queue, timeout, s.seen)
		}
	}
	return got
}

// quiet checks that no event for ids comes within d.
func (s *eventStream) quiet(t *testing.T, d time.Duration, ids ...string) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-s.ch:
			s.seen = append(s.seen, fmt.Sprintf("%.12s:%v", ev.ContainerId, ev.ContainerEventType))
			if contains(ids, ev.ContainerId) {
				t.Fatalf("unexpected event %v for %.12s; events so far: %v", ev.ContainerEventType, ev.ContainerId, s.seen)
			}
		case <-deadline:
			return
		}
	}
}

// containerState returns the state of container id in an event's
// statuses, or -1.
func containerState(ev *runtimeapi.ContainerEventResponse, id string) runtimeapi.ContainerState {
	for _, st := range ev.ContainersStatuses {
		if st.Id == id {
			return st.State
		}
	}
	return -1
}

func TestContainerEventsFollowALifecycle(t *testing.T) {
	ctx := context.Background()
	events := watchEvents(t, berth)
	p := newPod(t, berth, "events")
	events.expect(t, time.Minute, want{p.id, evCreated}, want{p.id, evStarted})

	id := p.create(t, containerConfig("life", "sleep 3600"))
	got := events.expect(t, time.Minute, want{id, evCreated})
	if got[0].PodSandboxStatus.GetId() != p.id || got[0].PodSandboxStatus.GetMetadata().GetUid() != p.cfg.Metadata.Uid {
		t.Errorf("CREATED carries pod sandbox status %v", got[0].PodSandboxStatus)
	}
	if st := containerState(got[0], id); st != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("CREATED event: container state %v", st)
	}
	if err := berth.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	got = events.expect(t, time.Minute, want{id, evStarted})
	if st := containerState(got[0], id); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("STARTED event: container state %v", st)
	}
	if err := berth.Runtime.StopContainer(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	got = events.expect(t, time.Minute, want{id, evStopped})
	if st := containerState(got[0], id); st != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("STOPPED event: container state %v", st)
	}
	if err := berth.Runtime.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	got = events.expect(t, time.Minute, want{id, evDeleted})
	if st := containerState(got[0], id); st != -1 {
		t.Errorf("DELETED event still lists the container (%v)", st)
	}

	if err := berth.Runtime.StopPodSandbox(ctx, p.id); err != nil {
		t.Fatal(err)
	}
	got = events.expect(t, time.Minute, want{p.id, evStopped})
	if got[0].PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("sandbox STOPPED event: state %v", got[0].PodSandboxStatus.GetState())
	}
	if err := berth.Runtime.RemovePodSandbox(ctx, p.id); err != nil {
		t.Fatal(err)
	}
	events.expect(t, time.Minute, want{p.id, evDeleted})
	events.quiet(t, time.Second, p.id, id)
	for i := 1; i < len(got); i++ {
		if got[i].CreatedAt < got[i-1].CreatedAt {
			t.Errorf("event times go back")
		}
	}
}

// loadTestImage copies the test image from the suite's Docker into the
// Docker at host.
func loadTestImage(t *testing.T, host string) {
	t.Helper()
	save := exec.Command("docker", "save", framework.TestImage)
	save.Env = append(save.Environ(), "DOCKER_HOST="+framework.DockerHost())
	load := exec.Command("docker", "load", "-q")
	load.Env = append(load.Environ(), "DOCKER_HOST="+host)
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin = pipe
	var out strings.Builder
	load.Stdout, load.Stderr = &out, &out
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if err := load.Run(); err != nil {
		t.Fatalf("docker load: %v: %s", err, out.String())
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save: %v", err)
	}
}

// TestContainerEventsAcrossDockerRestart checks that the event stream
// survives Docker going away and coming back, and that what changed while
// Berth could not watch Docker is reported: a private daemon with
// live-restore keeps its containers running while it is down; one of them
// is killed in that gap.
func TestContainerEventsAcrossDockerRestart(t *testing.T) {
	ctx := context.Background()
	d := framework.StartDockerd(t, "", "--live-restore")
	// A live-restore daemon leaves its data root mounted when it stops:
	// stop it and unmount before the framework removes its directory.
	t.Cleanup(func() {
		d.Stop(t)
		unmountUnder(t, d.Dir)
	})
	loadTestImage(t, d.Host)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", d.Host, "--network-plugin="}})
	events := watchEvents(t, b)

	p := newPod(t, b, "restart")
	victim := p.run(t, containerConfig("victim", "sleep 3600"))
	survivor := p.run(t, containerConfig("survivor", "sleep 3600"))
	events.expect(t, time.Minute,
		want{p.id, evCreated}, want{p.id, evStarted},
		want{victim, evCreated}, want{victim, evStarted},
		want{survivor, evCreated}, want{survivor, evStarted})
	pid := containerPidAt(t, d.Host, victim)

	d.Stop(t)
	// Docker is down; its containers run on (live-restore). Kill one.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the victim's process %d: %v", pid, err)
	}
	d.Start(t)

	got := events.expect(t, 2*time.Minute, want{victim, evStopped})
	if st := containerState(got[0], victim); st != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("STOPPED event after the restart: victim's state %v", st)
	}
	if st := containerState(got[0], survivor); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("STOPPED event after the restart: survivor's state %v", st)
	}
	events.quiet(t, 2*time.Second, p.id, survivor)

	// The stream goes on with Docker's new event stream.
	if err := b.Runtime.RemoveContainer(ctx, victim); err != nil {
		t.Fatal(err)
	}
	late := p.run(t, containerConfig("late", "sleep 3600"))
	if err := b.Runtime.StopContainer(ctx, survivor, 1); err != nil {
		t.Fatal(err)
	}
	events.expect(t, time.Minute,
		want{victim, evDeleted},
		want{late, evCreated}, want{late, evStarted},
		want{survivor, evStopped})
}

// unmountUnder unmounts everything mounted under dir.
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // children first
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", m, err)
		}
	}
}

// containerPidAt is the pid of a running container of the Docker at host.
func containerPidAt(t *testing.T, host, id string) int {
	t.Helper()
	cmd := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", id)
	cmd.Env = append(cmd.Environ(), "DOCKER_HOST="+host)
	out, err := cmd.Output()
	var pid int
	if _, perr := fmt.Sscan(strings.TrimSpace(string(out)), &pid); err != nil || perr != nil || pid <= 0 {
		t.Fatalf("pid of %s: %q %v", id, out, err)
	}
	return pid
}
