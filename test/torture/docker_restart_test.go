package torture

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestDockerRestart stops and starts a private Docker daemon under a berth
// with pods running, with and without Docker's live-restore. While Docker
// is away Berth reports RuntimeReady false (and /healthz fails), answers
// the calls that need Docker with Unavailable instead of hanging, and keeps
// answering from its index (and stats from the cgroups); once Docker is
// back it reconnects by itself and its view is right: with live-restore the
// pods and containers kept running and are READY/RUNNING with figures in
// their stats and no stop event, without it they died with the daemon and
// are NOTREADY/EXITED, each with a stop event on GetContainerEvents and no
// figures. New pods run afterwards, and nothing is left once the pods are
// removed.
func TestDockerRestart(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{false, true} {
		name := "without-live-restore"
		var args []string
		if live {
			name = "live-restore"
			args = append(args, "--live-restore")
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRow(t)
			d := framework.StartDockerd(t, "", args...)
			loadTestImage(t, d.Host)
			n := startNode(t, r, nodeOptions{Docker: d.Host})
			dockerRestart(t, r, n, d, live)
		})
	}
}

type runningPod struct {
	cfg       *runtimeapi.PodSandboxConfig
	id, ip    string
	container string
}

func dockerRestart(t *testing.T, r *Row, n *node, d *framework.Dockerd, live bool) {
	var pods []*runningPod
	for i := range scale.DockerRestartPods {
		p := &runningPod{cfg: n.podConfig(fmt.Sprintf("outage-%d", i))}
		var err error
		if p.id, err = n.runPod(p.cfg); r.Call("RunPodSandbox", err) != nil {
			t.Fatalf("RunPodSandbox before the restart: %v", err)
		}
		st, err := n.podStatus(p.id)
		if r.Call("PodSandboxStatus", err) == nil {
			p.ip = st.GetNetwork().GetIp()
		}
		if p.container, err = n.startContainer(p.id, p.cfg, containerConfig("app")); r.Call("CreateContainer+StartContainer", err) != nil {
			t.Fatalf("starting a container before the restart: %v", err)
		}
		pods = append(pods, p)
	}

	events := watchEvents(t, n)

	d.Stop(t)
	r.Fault(1)
	// Not ready, and said so.
	ready, err := n.runtimeReady()
	r.Call("Status", err)
	r.Check(!ready, "Status reports RuntimeReady with Docker stopped")
	_, err = n.b.HTTPGet("/healthz")
	r.Check(err != nil, "/healthz is healthy with Docker stopped")
	// Calls that need Docker answer Unavailable: each returns (a hang
	// would end in the client's DeadlineExceeded, which is unexpected).
	c, cancel := ctx()
	_, err = n.rt.Version(c, &runtimeapi.VersionRequest{})
	r.Call("Version during the outage", wantErr(err), codes.Unavailable)
	extra := n.podConfig("during-outage")
	_, err = n.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: extra})
	r.Call("RunPodSandbox during the outage", wantErr(err), codes.Unavailable)
	p := pods[0]
	if live {
		// The pod is READY in Berth's index: the create reaches for Docker.
		_, err = n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: containerConfig("late"), SandboxConfig: p.cfg})
		r.Call("CreateContainer during the outage", wantErr(err), codes.Unavailable)
	}
	_, err = n.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: p.container, Timeout: 0})
	r.Call("StopContainer during the outage", wantErr(err), codes.Unavailable)
	// Calls answered from the index still work.
	_, err = n.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	r.Call("ListPodSandbox during the outage", err)
	_, err = n.rt.ListContainers(c, &runtimeapi.ListContainersRequest{})
	r.Call("ListContainers during the outage", err)
	_, err = n.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	r.Call("PodSandboxStatus during the outage", err)
	// Stats come from the cgroups, not from Docker.
	_, err = n.rt.ContainerStats(c, &runtimeapi.ContainerStatsRequest{ContainerId: p.container})
	r.Call("ContainerStats during the outage", err)
	cancel()

	start := time.Now()
	d.Start(t)
	// Berth reconnects by itself.
	err = eventually(time.Minute, func() error {
		if ok, err := n.runtimeReady(); err != nil || !ok {
			return fmt.Errorf("RuntimeReady %v, %v", ok, err)
		}
		return nil
	})
	r.Check(err == nil, "Berth did not report ready after Docker came back: %v", err)
	_, err = n.b.HTTPGet("/healthz")
	r.Check(err == nil, "/healthz after Docker came back: %v", err)

	wantPod, wantContainer := runtimeapi.PodSandboxState_SANDBOX_NOTREADY, runtimeapi.ContainerState_CONTAINER_EXITED
	if live {
		wantPod, wantContainer = runtimeapi.PodSandboxState_SANDBOX_READY, runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	err = eventually(time.Minute, func() error {
		for _, p := range pods {
			st, err := n.podStatus(p.id)
			if err != nil {
				return err
			}
			if st.State != wantPod {
				return fmt.Errorf("pod %s is %v, want %v", p.id, st.State, wantPod)
			}
			if live && st.GetNetwork().GetIp() != p.ip {
				return fmt.Errorf("pod %s has IP %q, had %q", p.id, st.GetNetwork().GetIp(), p.ip)
			}
			cs, err := n.containerStatus(p.container)
			if err != nil {
				return err
			}
			if cs.State != wantContainer {
				return fmt.Errorf("container %s is %v, want %v", p.container, cs.State, wantContainer)
			}
		}
		return nil
	})
	r.Check(err == nil, "Berth's view after Docker came back: %v", err)
	// Events: the containers and pods that died with the daemon are
	// reported stopped (evented PLEG learns of it), and those that kept
	// running under live-restore are not.
	for _, p := range pods {
		for _, id := range []string{p.id, p.container} {
			if live {
				r.Check(!events.seen(id, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT), "%s kept running under live-restore, but a stop event was sent", id)
			} else {
				r.Check(events.wait(id, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, time.Minute), "%s died with Docker, but no stop event was sent", id)
			}
		}
	}
	// Stats: the figures of what runs, none for what died.
	c, cancel = ctx()
	for _, p := range pods {
		cs, err := n.rt.ContainerStats(c, &runtimeapi.ContainerStatsRequest{ContainerId: p.container})
		if r.Call("ContainerStats after the restart", err) != nil {
			continue
		}
		mem := cs.GetStats().GetMemory().GetWorkingSetBytes().GetValue()
		if live {
			r.Check(mem > 0 && cs.GetStats().GetCpu() != nil, "container %s runs, but its stats have no figures: %v", p.container, cs.GetStats())
		} else {
			r.Check(mem == 0, "container %s died with Docker, but its stats show %d bytes in use", p.container, mem)
		}
	}
	ps, err := n.rt.ListPodSandboxStats(c, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{
		LabelSelector: map[string]string{"berth-torture-node": n.id}}})
	if r.Call("ListPodSandboxStats after the restart", err) == nil {
		r.Check(len(ps.GetStats()) == len(pods), "%d pods have stats after the restart, want %d", len(ps.GetStats()), len(pods))
	}
	cancel()
	r.Note("view right %v after Docker answered again", time.Since(start).Round(100*time.Millisecond))
	items, err := n.pods()
	if r.Call("ListPodSandbox", err) == nil {
		r.Check(len(items) == len(pods), "%d pods listed after the restart, want %d (the one refused during the outage must not appear)", len(items), len(pods))
	}

	// Berth works again.
	after := n.podConfig("after-outage")
	id, err := n.runPod(after)
	if r.Call("RunPodSandbox after the outage", err) == nil {
		_, err = n.startContainer(id, after, containerConfig("app"))
		r.Call("CreateContainer+StartContainer after the outage", err)
	}
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// wantErr turns a success that should have been a refusal into an error.
func wantErr(err error) error {
	if err == nil {
		return fmt.Errorf("succeeded with Docker stopped")
	}
	return err
}

// loadTestImage copies the test image from the suite's daemon into host.
func loadTestImage(t *testing.T, host string) {
	t.Helper()
	save := exec.Command("docker", "save", framework.TestImage)
	save.Env = append(save.Environ(), "DOCKER_HOST="+framework.DockerHost())
	load := exec.Command("docker", "load")
	load.Env = append(load.Environ(), "DOCKER_HOST="+host)
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("docker load into %s: %v: %s", host, err, out)
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save %s: %v", framework.TestImage, err)
	}
}

// eventLog collects a berth's container events (GetContainerEvents, as
// kubelet's evented PLEG reads them).
type eventLog struct {
	mu   sync.Mutex // guards got
	got  map[string][]runtimeapi.ContainerEventType
	cond *sync.Cond
}

// watchEvents subscribes to the node's events until t ends.
func watchEvents(t *testing.T, n *node) *eventLog {
	t.Helper()
	l := &eventLog{got: map[string][]runtimeapi.ContainerEventType{}}
	l.cond = sync.NewCond(&l.mu)
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := n.rt.GetContainerEvents(c, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	// Subscribed once the headers arrive.
	if _, err := stream.Header(); err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got[ev.ContainerId] = append(l.got[ev.ContainerId], ev.ContainerEventType)
			l.cond.Broadcast()
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *eventLog) seenLocked(id string, want runtimeapi.ContainerEventType) bool {
	for _, t := range l.got[id] {
		if t == want {
			return true
		}
	}
	return false
}

// seen reports whether an event of that type came for id.
func (l *eventLog) seen(id string, want runtimeapi.ContainerEventType) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seenLocked(id, want)
}

// wait waits up to timeout for an event of that type for id.
func (l *eventLog) wait(id string, want runtimeapi.ContainerEventType, timeout time.Duration) bool {
	timer := time.AfterFunc(timeout, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.seenLocked(id, want) {
		if time.Now().After(deadline) {
			return false
		}
		l.cond.Wait()
	}
	return true
}
