package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestConcurrentClients has many clients, each on its own connection, do
// mixed CRI calls against one berth for a while: writers run pods and
// containers through their whole life (with an exec and stats), readers
// list, ask for stats, for statuses (of objects others may be removing
// meanwhile) and images. No call may
// fail other than as expected (NotFound for what another client removed),
// every call must return (a call running into kubelet's timeout is a
// hang), and afterwards the berth's goroutines and file descriptors are
// back to what they were before. With BERTH_TEST_RACE=1 the berth runs
// under the race detector.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	if err := n.cycle(r, "warm-up"); err != nil {
		t.Fatalf("warm-up cycle: %v", err)
	}
	base := n.settle(t, nil)

	stop := time.Now().Add(scale.ClientDuration)
	var wg sync.WaitGroup
	var conns []*grpc.ClientConn
	for i := range scale.Clients {
		conn, err := grpc.NewClient("unix://"+n.b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		c := &client{n: n, r: r, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn), id: i}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if i%4 == 3 {
					c.read()
				} else {
					c.write()
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(scale.ClientDuration + 2*callTimeout + time.Minute):
		t.Fatalf("the clients did not finish: a call hangs\n%s", n.b.GoroutineProfile())
	}
	for _, c := range conns {
		c.Close()
	}
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	n.settle(t, &base)
	r.Leaks(n.leaks())
}

// client is one of many concurrent CRI clients.
type client struct {
	n   *node
	r   *Row
	rt  runtimeapi.RuntimeServiceClient
	img runtimeapi.ImageServiceClient
	id  int
	seq int
}

// write runs one pod through its life: run, a container created and
// started, an exec in it, its stats and the pod's, statuses and lists, the
// container stopped and removed, the pod stopped and removed.
func (c *client) write() {
	r := c.r
	c.seq++
	cfg := c.n.podConfig(fmt.Sprintf("client-%d-%d", c.id, c.seq))
	var cc calls
	defer cc.done()
	run, err := c.rt.RunPodSandbox(cc.ctx(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if r.Call("RunPodSandbox", err) != nil {
		return
	}
	pod := run.PodSandboxId
	defer func() {
		_, err := c.rt.StopPodSandbox(cc.ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		r.Call("StopPodSandbox", err)
		_, err = c.rt.RemovePodSandbox(cc.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
		r.Call("RemovePodSandbox", err)
	}()
	created, err := c.rt.CreateContainer(cc.ctx(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: containerConfig("work"), SandboxConfig: cfg})
	if r.Call("CreateContainer", err) != nil {
		return
	}
	ctr := created.ContainerId
	_, err = c.rt.StartContainer(cc.ctx(), &runtimeapi.StartContainerRequest{ContainerId: ctr})
	r.Call("StartContainer", err)
	st, err := c.rt.PodSandboxStatus(cc.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: c.seq%2 == 0})
	if r.Call("PodSandboxStatus", err) == nil {
		r.Check(st.Status.State == runtimeapi.PodSandboxState_SANDBOX_READY, "a running pod is %v", st.Status.State)
	}
	cs, err := c.rt.ContainerStatus(cc.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if r.Call("ContainerStatus", err) == nil {
		r.Check(cs.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING, "a started container is %v", cs.Status.State)
	}
	ex, err := c.rt.ExecSync(cc.ctx(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"echo", "exec", fmt.Sprint(c.seq)}, Timeout: 60})
	if r.Call("ExecSync", err) == nil {
		r.Check(ex.ExitCode == 0 && string(ex.Stdout) == fmt.Sprintf("exec %d\n", c.seq), "ExecSync: exit %d, stdout %q, stderr %q", ex.ExitCode, ex.Stdout, ex.Stderr)
	}
	stats, err := c.rt.ContainerStats(cc.ctx(), &runtimeapi.ContainerStatsRequest{ContainerId: ctr})
	if r.Call("ContainerStats", err) == nil {
		r.Check(stats.GetStats().GetAttributes().GetId() == ctr, "ContainerStats of %s answered for %q", ctr, stats.GetStats().GetAttributes().GetId())
	}
	_, err = c.rt.PodSandboxStats(cc.ctx(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	r.Call("PodSandboxStats", err)
	list, err := c.rt.ListContainers(cc.ctx(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if r.Call("ListContainers", err) == nil {
		r.Check(len(list.Containers) == 1 && list.Containers[0].Id == ctr, "the pod's containers: %v", list.Containers)
	}
	_, err = c.rt.StopContainer(cc.ctx(), &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 0})
	r.Call("StopContainer", err)
	_, err = c.rt.RemoveContainer(cc.ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
	r.Call("RemoveContainer", err)
}

// read lists, asks for stats of everything and for statuses of objects
// other clients may be removing meanwhile (NotFound is then expected).
func (c *client) read() {
	r := c.r
	var cc calls
	defer cc.done()
	pods, err := c.rt.ListPodSandbox(cc.ctx(), &runtimeapi.ListPodSandboxRequest{})
	r.Call("ListPodSandbox", err)
	ctrs, err := c.rt.ListContainers(cc.ctx(), &runtimeapi.ListContainersRequest{})
	r.Call("ListContainers", err)
	if len(pods.GetItems()) > 0 {
		p := pods.Items[rand.IntN(len(pods.Items))]
		_, err := c.rt.PodSandboxStatus(cc.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id})
		r.Call("PodSandboxStatus", err, codes.NotFound)
	}
	if len(ctrs.GetContainers()) > 0 {
		ct := ctrs.Containers[rand.IntN(len(ctrs.Containers))]
		_, err := c.rt.ContainerStatus(cc.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: ct.Id})
		r.Call("ContainerStatus", err, codes.NotFound)
	}
	_, err = c.rt.ListContainerStats(cc.ctx(), &runtimeapi.ListContainerStatsRequest{})
	r.Call("ListContainerStats", err)
	_, err = c.rt.ListPodSandboxStats(cc.ctx(), &runtimeapi.ListPodSandboxStatsRequest{})
	r.Call("ListPodSandboxStats", err)
	_, err = c.rt.Status(cc.ctx(), &runtimeapi.StatusRequest{})
	r.Call("Status", err)
	_, err = c.rt.Version(cc.ctx(), &runtimeapi.VersionRequest{})
	r.Call("Version", err)
	_, err = c.img.ImageStatus(cc.ctx(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: framework.TestImage}})
	r.Call("ImageStatus", err)
	_, err = c.img.ListImages(cc.ctx(), &runtimeapi.ListImagesRequest{})
	r.Call("ListImages", err)
	_, err = c.img.ImageFsInfo(cc.ctx(), &runtimeapi.ImageFsInfoRequest{})
	r.Call("ImageFsInfo", err)
	time.Sleep(50 * time.Millisecond)
}

// calls gives each call its own deadline of kubelet's size, as kubelet
// does: on a loaded node one slow call must not eat the next one's time.
type calls struct{ cancels []context.CancelFunc }

func (c *calls) ctx() context.Context {
	cx, cancel := ctx()
	c.cancels = append(c.cancels, cancel)
	return cx
}

func (c *calls) done() {
	for _, cancel := range c.cancels {
		cancel()
	}
}

// cycle runs one pod with a container through its whole life.
func (n *node) cycle(r *Row, name string) error {
	cfg := n.podConfig(name)
	id, err := n.runPod(cfg)
	if r.Call("RunPodSandbox", err) != nil {
		return err
	}
	_, err = n.startContainer(id, cfg, containerConfig("app"))
	r.Call("CreateContainer+StartContainer", err)
	return r.Call("StopPodSandbox+RemovePodSandbox", n.removePod(id))
}

// figures are the berth's goroutines and file descriptors at a quiet time.
// The cgroup files Berth keeps open for the stats of running containers
// are counted apart: every berth on a daemon samples every pod it lists,
// also those of the scenarios running beside this one, which come and go on
// their own schedule. Those of containers that are gone are stale: Berth
// must close them (within a sampling pass or two).
type figures struct {
	goroutines int
	fds        int
	fdList     map[string]string
	stale      map[string]string // fd → cgroup file of a container that is gone
}

// settle waits until the berth is quiet and returns its figures. With a
// baseline, it waits (up to a minute and a half: Docker's idle connections
// close after 30 s) for the figures to come back to it — within a handful
// of goroutines and two descriptors, for the idle Docker connections a
// burst leaves — and counts a leak if they do not, or if cgroup files of
// gone containers stay open.
func (n *node) settle(t *testing.T, base *figures) figures {
	t.Helper()
	const goroutineSlack, fdSlack = 4, 2
	var cur figures
	read := func() error {
		g, err := n.b.Goroutines()
		if err != nil {
			return err
		}
		fds, err := n.b.FDs()
		if err != nil {
			return err
		}
		stale, err := n.splitCgroupFiles(fds)
		if err != nil {
			return err
		}
		cur = figures{goroutines: g, fds: len(fds), fdList: fds, stale: stale}
		return nil
	}
	if base == nil {
		// Quiet: the same figures twice, a second apart.
		var prev figures
		err := eventually(time.Minute, func() error {
			prev = cur
			time.Sleep(time.Second)
			if err := read(); err != nil {
				return err
			}
			if cur.goroutines != prev.goroutines || cur.fds != prev.fds {
				return fmt.Errorf("still changing: %d→%d goroutines, %d→%d fds", prev.goroutines, cur.goroutines, prev.fds, cur.fds)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("the berth never settled: %v", err)
		}
		return cur
	}
	err := eventually(90*time.Second, func() error {
		if err := read(); err != nil {
			return err
		}
		if cur.goroutines > base.goroutines+goroutineSlack || cur.fds > base.fds+fdSlack {
			return fmt.Errorf("%d goroutines (%d before), %d fds (%d before)", cur.goroutines, base.goroutines, cur.fds, base.fds)
		}
		return nil
	})
	n.r.Note("goroutines %d→%d, fds %d→%d", base.goroutines, cur.goroutines, base.fds, cur.fds)
	if err != nil {
		var extra []string
		for fd, target := range cur.fdList {
			if _, ok := base.fdList[fd]; !ok {
				extra = append(extra, fd+"→"+target)
			}
		}
		n.r.Leak("berth did not come back to its baseline: %v; new fds %v\n%s", err, extra, n.b.GoroutineProfile())
	}
	// Stale cgroup files: each must be closed a few sampling passes
	// (internal/stats, 5 s) after its container went.
	if len(cur.stale) > 0 {
		first := cur.stale
		time.Sleep(20 * time.Second)
		if err := read(); err != nil {
			n.r.Unexpected("reading the berth's figures: %v", err)
			return cur
		}
		for fd, target := range cur.stale {
			if first[fd] == target {
				n.r.Leak("berth keeps %s open, of a container that is gone", target)
			}
		}
	}
	return cur
}

// cgroupContainer finds a container id in a cgroup file's path.
var cgroupContainer = regexp.MustCompile(`^/sys/fs/cgroup/.*/([0-9a-f]{64})(\.scope)?/[^/]+$`)

// splitCgroupFiles removes from fds the cgroup files of containers and
// returns those of containers not running in the node's Docker.
func (n *node) splitCgroupFiles(fds map[string]string) (stale map[string]string, err error) {
	cgroupFDs := map[string]string{} // fd → container id
	for fd, target := range fds {
		if m := cgroupContainer.FindStringSubmatch(target); m != nil {
			cgroupFDs[fd] = m[1]
		}
	}
	if len(cgroupFDs) == 0 {
		return nil, nil
	}
	out, err := dockerCLI(n.docker, "ps", "-q", "--no-trunc")
	if err != nil {
		return nil, fmt.Errorf("docker ps: %v: %s", err, out)
	}
	running := map[string]bool{}
	for _, id := range strings.Fields(out) {
		running[id] = true
	}
	stale = map[string]string{}
	for fd, id := range cgroupFDs {
		if !running[id] {
			stale[fd] = fds[fd]
		}
		delete(fds, fd)
	}
	return stale, nil
}
