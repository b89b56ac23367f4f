package torture

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestFaultCNIAddFails makes the last plugin of the pod network's chain fail
// ADD on demand, after the plugins before it allocated an address: each
// failed RunPodSandbox must leave no container, checkpoint, address or
// interface, and pods run between the failures are unaffected.
func TestFaultCNIAddFails(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	plugin := newFailPlugin(t)
	n := startNode(t, r, nodeOptions{CNI: plugin.options()})
	var good []string
	for i := range 2 * scale.FaultRounds {
		fail := i%2 == 0
		if err := plugin.set(fail); err != nil {
			t.Fatal(err)
		}
		cfg := n.podConfig(fmt.Sprintf("cni-%d", i))
		id, err := n.runPod(cfg)
		if fail {
			r.Fault(1)
			if r.Call("RunPodSandbox with CNI ADD failing", wantErr(err), codes.Unavailable) != nil {
				r.Check(strings.Contains(status.Convert(err).Message(), "injected failure"), "the error does not carry the plugin's: %v", err)
			}
			r.Leaks(n.leaksOf(cfg, good))
			continue
		}
		if r.Call("RunPodSandbox", err) == nil {
			good = append(good, id)
			st, err := n.podStatus(id)
			if r.Call("PodSandboxStatus", err) == nil {
				r.Check(st.State == runtimeapi.PodSandboxState_SANDBOX_READY && st.GetNetwork().GetIp() != "", "pod after a failed one: %v %q", st.State, st.GetNetwork().GetIp())
			}
		}
	}
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// leaksOf reports what a failed RunPodSandbox of cfg left while the pods
// in running exist: its pause container, a sandbox listed for it, and more
// checkpoints or addresses than the running pods account for.
func (n *node) leaksOf(cfg *runtimeapi.PodSandboxConfig, running []string) []string {
	var out []string
	if ids, _ := dockerIDs(n.docker, "name=k8s_POD_"+cfg.Metadata.Name+"_berth-torture_"+cfg.Metadata.Uid+"_"); len(ids) > 0 {
		out = append(out, fmt.Sprintf("pause containers of the failed pod: %v", ids))
	}
	items, _ := n.pods()
	for _, p := range items {
		if p.Metadata.GetUid() == cfg.Metadata.Uid {
			out = append(out, fmt.Sprintf("the failed pod is listed: %s %v", p.Id, p.State))
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(n.b.RootDir, "sandboxes")); len(entries) > len(running) {
		out = append(out, fmt.Sprintf("%d checkpoints for %d pods", len(entries), len(running)))
	}
	if ips := n.net.AllocatedIPs(); len(ips) > len(running) {
		out = append(out, fmt.Sprintf("%d addresses allocated for %d pods: %v", len(ips), len(running), ips))
	}
	if ports := bridgePorts(n.net.Bridge); len(ports) > len(running) {
		out = append(out, fmt.Sprintf("%d interfaces on the bridge for %d pods: %v", len(ports), len(running), ports))
	}
	return out
}

// TestFaultDockerFails puts a fault-injecting proxy between Berth and
// Docker and makes container create and start fail with a Docker error:
// RunPodSandbox, CreateContainer and StartContainer fail with it and leave
// nothing behind (a container whose start failed stays, as CRI has it,
// until kubelet removes it).
func TestFaultDockerFails(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	proxy := framework.StartDockerProxy(t)
	n := startNode(t, r, nodeOptions{Endpoint: proxy.Host})
	pod := n.podConfig("steady")
	podID, err := n.runPod(pod)
	if r.Call("RunPodSandbox", err) != nil {
		t.Fatal(err)
	}
	running := []string{podID}
	for round := range scale.FaultRounds {
		for _, path := range []string{"/containers/create", "/containers/*/start"} {
			f := proxy.Inject(&framework.Fault{Method: http.MethodPost, Path: path, Status: http.StatusInternalServerError, Message: "injected fault"})
			cfg := n.podConfig(fmt.Sprintf("docker-fails-%d", round))
			_, err := n.runPod(cfg)
			r.Call("RunPodSandbox with "+path+" failing", wantErr(err), codes.Internal)
			r.Leaks(n.leaksOf(cfg, running))

			cc := containerConfig(fmt.Sprintf("c%d", round))
			cid, err := n.startContainer(podID, pod, cc)
			proxy.Clear(f)
			r.Fault(f.Hits())
			r.Call("CreateContainer+StartContainer with "+path+" failing", wantErr(err), codes.Internal)
			if cid != "" {
				// The start failed: the container is CREATED, and
				// kubelet removes it.
				st, err := n.containerStatus(cid)
				if r.Call("ContainerStatus", err) == nil {
					r.Check(st.State == runtimeapi.ContainerState_CONTAINER_CREATED, "container whose start failed is %v", st.State)
				}
				c, cancel := ctx()
				_, err = n.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: cid})
				cancel()
				r.Call("RemoveContainer", err)
			}
			c, cancel := ctx()
			list, err := n.rt.ListContainers(c, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
			cancel()
			if r.Call("ListContainers", err) == nil {
				r.Check(len(list.Containers) == 0, "containers left in the pod after failed creates: %v", list.Containers)
			}
			if ids, _ := dockerIDs(n.docker, "name=k8s_"+cc.Metadata.Name+"_steady_"); len(ids) > 0 {
				r.Leak("containers left in Docker after a failed create: %v", ids)
			}
		}
	}
	// Docker answering again, everything works.
	_, err = n.startContainer(podID, pod, containerConfig("after"))
	r.Call("CreateContainer+StartContainer after the faults", err)
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// TestFaultDockerHangs makes container create hang in the proxy. A
// RunPodSandbox (and a CreateContainer) whose caller gives up before the
// create returns keeps going in the background: the caller's retries while
// it runs wait for it, and once it is released the retry gets the same
// sandbox (container), with no "name reserved" and one create in Docker. A
// create that hangs until Berth's own timeout fails the call (it returns)
// and leaves nothing.
func TestFaultDockerHangs(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	proxy := framework.StartDockerProxy(t)
	// Berth bounds a detached RunPodSandbox by twice this: room for a
	// pause container's start on a loaded two-core machine (a shared
	// daemon there was seen taking over 40 s), and still well inside the
	// client's callTimeout for the creates that hang until Berth gives up.
	const requestTimeout = 30 * time.Second
	n := startNode(t, r, nodeOptions{Endpoint: proxy.Host, Args: []string{"--runtime-request-timeout", requestTimeout.String()}})

	var running []string
	for round := range scale.FaultRounds {
		// A pod whose create hangs past the caller's deadline.
		cfg := n.podConfig(fmt.Sprintf("hang-%d", round))
		f := proxy.Inject(&framework.Fault{Method: http.MethodPost, Path: "/containers/create", Hang: true, Times: 1})
		r.Fault(1)
		for range 2 { // the first call, then kubelet's retry, both time out
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := n.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			cancel()
			r.Call("RunPodSandbox while create hangs", wantErr(err), codes.DeadlineExceeded)
		}
		r.Check(f.WaitHeld(1, time.Minute), "the create never reached the proxy")
		proxy.Clear(f)
		id, err := n.runPod(cfg)
		if r.Call("RunPodSandbox retried after the create was released", err) != nil {
			continue // no pod to put a container in
		}
		running = append(running, id)
		pause, _ := dockerIDs(n.docker, "name=k8s_POD_"+cfg.Metadata.Name+"_berth-torture_"+cfg.Metadata.Uid+"_")
		r.Check(len(pause) == 1 && pause[0] == id, "pause containers %v, want just %s", pause, id)
		again, err := n.runPod(cfg)
		r.Call("RunPodSandbox once more", err)
		r.Check(again == id, "a further retry returned %s, not %s", again, id)
		creates := proxy.Requests(func(q framework.DockerRequest) bool {
			return q.Method == http.MethodPost && q.Path == "/containers/create" && strings.Contains(q.Query.Get("name"), cfg.Metadata.Uid)
		})
		r.Check(len(creates) == 1, "%d creates of the pause container reached the proxy, want 1", len(creates))

		// A container whose create hangs past the caller's deadline.
		cc := containerConfig("slow")
		f = proxy.Inject(&framework.Fault{Method: http.MethodPost, Path: "/containers/create", Hang: true, Times: 1})
		r.Fault(1)
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: cc, SandboxConfig: cfg})
		cancel()
		r.Call("CreateContainer while create hangs", wantErr(err), codes.DeadlineExceeded)
		r.Check(f.WaitHeld(1, time.Minute), "the create never reached the proxy")
		proxy.Clear(f)
		c, cancel = ctx()
		resp, err := n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: cc, SandboxConfig: cfg})
		cancel()
		if r.Call("CreateContainer retried after the create was released", err) == nil {
			ids, _ := dockerIDs(n.docker, "name=k8s_slow_"+cfg.Metadata.Name+"_")
			r.Check(len(ids) == 1 && ids[0] == resp.ContainerId, "containers %v, want just %s", ids, resp.ContainerId)
		}
	}

	// A create that hangs until Berth gives up: the call returns (Berth's
	// own deadline, not the caller's) and nothing is left.
	cfg := n.podConfig("hang-forever")
	f := proxy.Inject(&framework.Fault{Method: http.MethodPost, Path: "/containers/create", Hang: true})
	r.Fault(1)
	c, cancel := ctx()
	_, err := n.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	callerGaveUp := c.Err() != nil
	cancel()
	proxy.Clear(f)
	r.Check(!callerGaveUp, "RunPodSandbox with create hanging did not return before the caller's deadline: %v", err)
	r.Call("RunPodSandbox with create hanging until Berth's timeout", wantErr(err), codes.DeadlineExceeded)
	r.Leaks(n.leaksOf(cfg, running))

	// Docker finishes a create Berth gave up on: the pause container
	// appears afterwards. Berth lists it (NOTREADY, so kubelet can remove
	// it) and kubelet's retry replaces it.
	cfg = n.podConfig("late-create")
	f = proxy.Inject(&framework.Fault{Method: http.MethodPost, Path: "/containers/create", Hang: true, Late: true, Times: 1})
	r.Fault(1)
	_, err = n.runPod(cfg)
	r.Call("RunPodSandbox with create hanging until Berth's timeout", wantErr(err), codes.DeadlineExceeded)
	proxy.Clear(f)
	nameFilter := "name=k8s_POD_" + cfg.Metadata.Name + "_berth-torture_" + cfg.Metadata.Uid + "_"
	err = eventually(time.Minute, func() error {
		if ids, err := dockerIDs(n.docker, nameFilter); err != nil || len(ids) != 1 {
			return fmt.Errorf("pause containers %v (%v), want the late one", ids, err)
		}
		items, err := n.pods()
		if err != nil {
			return err
		}
		for _, p := range items {
			if p.Metadata.GetUid() == cfg.Metadata.Uid && p.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				return nil
			}
		}
		return fmt.Errorf("the late pause container is not listed NOTREADY: %v", items)
	})
	r.Check(err == nil, "a pause container Docker created after Berth gave up: %v", err)
	id, err := n.runPod(cfg)
	if r.Call("RunPodSandbox retried after a late create", err) == nil {
		running = append(running, id)
		ids, _ := dockerIDs(n.docker, nameFilter)
		r.Check(len(ids) == 1 && ids[0] == id, "pause containers %v after the retry, want just %s", ids, id)
	}

	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// TestFaultDiskFull runs Berth with --root-dir on a small tmpfs and fills
// it: RunPodSandbox fails (its checkpoint cannot be written) and leaves
// nothing, a pod that exists can still be stopped and removed, and once
// space is freed pods run again.
func TestFaultDiskFull(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "berth-torture", root).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs at %s: %v: %s", root, err, out)
	}
	// Registered first, so it runs after the berth stopped.
	t.Cleanup(func() {
		if err := syscall.Unmount(root, 0); err != nil {
			t.Errorf("unmounting %s: %v", root, err)
		}
	})
	n := startNode(t, r, nodeOptions{Dir: dir})
	existing := n.podConfig("before-full")
	existingID, err := n.runPod(existing)
	if r.Call("RunPodSandbox", err) != nil {
		t.Fatal(err)
	}
	_, err = n.startContainer(existingID, existing, containerConfig("app"))
	r.Call("CreateContainer+StartContainer", err)

	filler := filepath.Join(root, "filler")
	fill(t, filler)
	r.Fault(1)
	for i := range scale.FaultRounds {
		cfg := n.podConfig(fmt.Sprintf("disk-full-%d", i))
		_, err := n.runPod(cfg)
		if r.Call("RunPodSandbox with the disk full", wantErr(err), codes.Internal) != nil {
			r.Check(strings.Contains(status.Convert(err).Message(), "no space left"), "the error does not say the disk is full: %v", err)
		}
		r.Leaks(n.leaksOf(cfg, []string{existingID}))
	}
	// What exists can be stopped and removed while the disk is full.
	r.Call("StopPodSandbox+RemovePodSandbox with the disk full", n.removePod(existingID))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	cfg := n.podConfig("after-full")
	id, err := n.runPod(cfg)
	if r.Call("RunPodSandbox after space was freed", err) == nil {
		_, err = n.startContainer(id, cfg, containerConfig("app"))
		r.Call("CreateContainer+StartContainer after space was freed", err)
	}
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// fill writes path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
	// The last bytes that fit.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
}
