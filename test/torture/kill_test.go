package torture

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// killer kills a berth (SIGKILL) and restarts it, and tells the clients
// which of their calls a kill may have cut off: epoch is odd while the
// berth is down or recovering, and changes at every kill and every
// recovery.
type killer struct {
	n     *node
	r     *Row
	epoch atomic.Int64
	// slowest is the longest kill-to-recovered time (only the killing
	// goroutine touches it).
	slowest time.Duration
}

// hit reports whether a call that started in epoch e0 overlapped a kill.
func (k *killer) hit(e0 int64) bool { return e0%2 == 1 || k.epoch.Load() != e0 }

// kill kills and restarts the berth, then waits until it serves calls
// that need its recovered state.
func (k *killer) kill() {
	start := time.Now()
	defer func() { k.slowest = max(k.slowest, time.Since(start)) }()
	k.epoch.Add(1)
	k.r.Fault(1)
	if err := k.n.b.Kill(); err != nil {
		k.r.Unexpected("kill: %v", err)
	}
	if err := k.n.b.Restart(); err != nil {
		k.r.Unexpected("restart after a kill: %v", err)
	}
	// The gate opens once recovery is done.
	if err := eventually(callTimeout, func() error { _, err := k.n.pods(); return err }); err != nil {
		k.r.Unexpected("berth did not recover after a kill: %v", err)
	}
	k.epoch.Add(1)
}

// retry calls fn as kubelet would: again after an error caused by a kill,
// until it succeeds. An error no kill explains is returned.
func (k *killer) retry(what string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		e0 := k.epoch.Load()
		err := fn()
		if err == nil {
			k.r.Op()
			return nil
		}
		if !k.hit(e0) || status.Code(err) != codes.Unavailable || attempt > 20 {
			return fmt.Errorf("%s: %w", what, err)
		}
		k.r.Expected()
		time.Sleep(100 * time.Millisecond)
	}
}

// killedPod is what the test (kubelet) was told about one pod.
type killedPod struct {
	cfg        *runtimeapi.PodSandboxConfig
	id, ip     string
	containers []string
	removed    bool
}

// TestBerthKilled kills Berth at random points while pods are created and
// deleted concurrently: after each restart the interrupted calls are
// retried as kubelet retries them, and must converge (one pause container
// per pod, the id kubelet was told); afterwards every pod kubelet was told
// exists is listed with its state and IP, nothing deleted reappears, and
// once the pods are removed nothing is left.
func TestBerthKilled(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	k := &killer{n: n, r: r}

	pods := make([]*killedPod, scale.KillPods)
	work := make(chan int)
	var wg sync.WaitGroup
	for range scale.KillWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				pods[i] = k.lifecycle(i)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range scale.Kills {
			time.Sleep(time.Duration(200+rand.IntN(1500)) * time.Millisecond)
			k.kill()
		}
	}()
	for i := range pods {
		work <- i
	}
	close(work)
	wg.Wait()
	<-done

	// What kubelet was told against what Berth and Docker say.
	listed, err := n.pods()
	if err != nil {
		t.Fatalf("ListPodSandbox after the kills: %v", err)
	}
	byID := map[string]*runtimeapi.PodSandbox{}
	for _, p := range listed {
		byID[p.Id] = p
	}
	told := 0
	for _, p := range pods {
		if p == nil || p.id == "" {
			continue // its lifecycle failed; already counted
		}
		pause, err := dockerIDs(n.docker, "name=k8s_POD_"+p.cfg.Metadata.Name+"_berth-torture_"+p.cfg.Metadata.Uid+"_")
		if err != nil {
			r.Unexpected("docker ps: %v", err)
			continue
		}
		if p.removed {
			r.Check(byID[p.id] == nil, "removed pod %s is listed again", p.id)
			r.Check(len(pause) == 0, "removed pod %s has pause containers %v", p.id, pause)
			continue
		}
		told++
		got := byID[p.id]
		if !r.Check(got != nil, "pod %s (%s) that kubelet was told exists is not listed", p.id, p.cfg.Metadata.Name) {
			continue
		}
		r.Check(got.State == runtimeapi.PodSandboxState_SANDBOX_READY, "pod %s is %v after the kills, want READY", p.id, got.State)
		r.Check(len(pause) == 1 && pause[0] == p.id, "pod %s: pause containers %v, want exactly the one kubelet was told", p.id, pause)
		if st, err := n.podStatus(p.id); r.Call("PodSandboxStatus", err) == nil {
			r.Check(st.GetNetwork().GetIp() == p.ip, "pod %s has IP %q after the kills, had %q", p.id, st.GetNetwork().GetIp(), p.ip)
		}
		for _, c := range p.containers {
			if st, err := n.containerStatus(c); r.Call("ContainerStatus", err) == nil {
				r.Check(st.State == runtimeapi.ContainerState_CONTAINER_RUNNING, "container %s is %v after the kills, want RUNNING", c, st.State)
			}
		}
	}
	for _, p := range listed {
		known := false
		for _, q := range pods {
			known = known || (q != nil && q.id == p.Id)
		}
		r.Check(known, "pod %s (%s) is listed but kubelet was never told of it", p.Id, p.Metadata.GetName())
	}
	r.Note("%d kills, %d pods kept across them, restart to recovered state in at most %v (recovery itself at most %v)",
		scale.Kills, told, k.slowest.Round(100*time.Millisecond), slowestRecovery(n.b.Log()).Round(10*time.Millisecond))

	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// lifecycle runs one pod as kubelet would, retrying what a kill cuts off:
// run it, start a container in every other pod, then remove two pods in
// three.
func (k *killer) lifecycle(i int) *killedPod {
	n, r := k.n, k.r
	p := &killedPod{cfg: n.podConfig(fmt.Sprintf("killed-%d", i))}
	if err := k.retry("RunPodSandbox", func() (err error) { p.id, err = n.runPod(p.cfg); return err }); err != nil {
		r.Unexpected("pod %d: %v", i, err)
		return p
	}
	if err := k.retry("PodSandboxStatus", func() error {
		st, err := n.podStatus(p.id)
		p.ip = st.GetNetwork().GetIp()
		return err
	}); err != nil {
		r.Unexpected("pod %d: %v", i, err)
	}
	r.Check(p.ip != "", "pod %d (%s) has no IP", i, p.id)
	if i%2 == 0 {
		if id, err := k.createAndStart(p, containerConfig("work")); err != nil {
			r.Unexpected("pod %d: %v", i, err)
		} else {
			p.containers = append(p.containers, id)
		}
	}
	if i%3 != 0 {
		if err := k.retry("StopPodSandbox+RemovePodSandbox", func() error { return n.removePod(p.id) }); err != nil {
			r.Unexpected("pod %d: %v", i, err)
			return p
		}
		p.removed = true
	}
	return p
}

// createAndStart creates and starts a container as kubelet would after a
// kill: a create that was cut off may have made the container, which a
// retry then finds by name (AlreadyExists) and lists.
func (k *killer) createAndStart(p *killedPod, cfg *runtimeapi.ContainerConfig) (string, error) {
	n := k.n
	var id string
	for attempt := 0; ; attempt++ {
		e0 := k.epoch.Load()
		c, cancel := ctx()
		resp, err := n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
		cancel()
		if err == nil {
			k.r.Op()
			id = resp.ContainerId
			break
		}
		code := status.Code(err)
		if attempt > 0 && code == codes.AlreadyExists {
			// The cut-off attempt made it: find it.
			k.r.Expected()
			if id, err = k.findContainer(p.id, cfg.Metadata.Name); err != nil {
				return "", err
			}
			break
		}
		if !k.hit(e0) || code != codes.Unavailable || attempt > 20 {
			return "", fmt.Errorf("CreateContainer: %w", err)
		}
		k.r.Expected()
	}
	err := k.retry("StartContainer", func() error {
		c, cancel := ctx()
		defer cancel()
		_, err := n.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: id})
		return err
	})
	return id, err
}

func (k *killer) findContainer(podID, name string) (string, error) {
	var found []string
	err := k.retry("ListContainers", func() error {
		c, cancel := ctx()
		defer cancel()
		resp, err := k.n.rt.ListContainers(c, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			return err
		}
		found = nil
		for _, c := range resp.Containers {
			if c.Metadata.GetName() == name {
				found = append(found, c.Id)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(found) != 1 {
		return "", fmt.Errorf("containers named %s in pod %s: %v, want one", name, podID, strings.Join(found, ","))
	}
	return found[0], nil
}

// recoveredTook finds how long each start-up's recovery took in a berth's
// log (internal/app logs it once the socket accepts every call).
var recoveredTook = regexp.MustCompile(`msg="state recovered from Docker; accepting all CRI calls" took=(\S+)`)

// slowestRecovery is the longest recovery in a berth's log.
func slowestRecovery(log string) time.Duration {
	var slowest time.Duration
	for _, m := range recoveredTook.FindAllStringSubmatch(log, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			slowest = max(slowest, d)
		}
	}
	return slowest
}
