package torture

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// runID labels everything this test process creates.
var runID = randomSuffix()

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// callTimeout bounds every CRI call the suite makes: kubelet's default
// runtime request timeout. A call that runs into it is a hang, never an
// expected error.
const callTimeout = 2 * time.Minute

// node is a berth of a scenario's own with its CNI network, and a raw CRI
// client that reconnects quickly when the berth is killed and restarted.
type node struct {
	t   *testing.T
	r   *Row
	b   *framework.Berth
	net *framework.CNINetwork
	// docker is the daemon the berth's containers live in (the real one,
	// also when the berth talks to it through a proxy).
	docker string
	logDir string
	// id labels the node's pods: the berths of scenarios running side by
	// side share a Docker daemon, and each lists the others' pods too (it
	// adopts every pod in Docker named as dockershim named them), so a
	// scenario lists and removes only the pods carrying its node's id.
	id string

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
}

type nodeOptions struct {
	CNI framework.CNIOptions
	// Args are extra berth flags.
	Args []string
	// Endpoint is berth's --docker-endpoint (a proxy, a private daemon);
	// Docker is the daemon behind it. Both default to DockerHost().
	Endpoint string
	Docker   string
	// Dir holds the socket and root dir (e.g. a tmpfs mount point's parent).
	Dir    string
	NoRace bool
	// NoWait starts berth without waiting for it to answer (start-up
	// failures are the test).
	NoWait bool
}

// startNode starts a berth on a fresh CNI network with metrics (and pprof)
// on loopback; it is stopped when t ends. A data race the detector reports
// (BERTH_TEST_RACE=1) or a panic in a CRI call is an unexpected error of r.
func startNode(t *testing.T, r *Row, o nodeOptions) *node {
	t.Helper()
	if o.Docker == "" {
		o.Docker = framework.DockerHost()
	}
	if o.Endpoint == "" {
		o.Endpoint = o.Docker
	}
	n := &node{t: t, r: r, docker: o.Docker, logDir: t.TempDir(), id: randomSuffix()}
	n.net = framework.NewCNINetwork(t, o.CNI)
	// Registered before the berth starts, so it runs once the berth has
	// stopped (and before the network is removed): whatever a failed
	// scenario left in Docker goes, so the next run starts clean. The
	// scenario has counted it as a leak already.
	t.Cleanup(func() {
		if n.b == nil {
			return
		}
		if ids, _ := dockerIDs(n.docker, "label=io.berth.root="+n.b.RootDir); len(ids) > 0 {
			if out, err := dockerCLI(n.docker, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
				t.Logf("removing the containers the scenario left: %v: %s", err, out)
			}
		}
	})
	args := append(n.net.Args(o.CNI), "--docker-endpoint", o.Endpoint, "--metrics-address", "127.0.0.1:0")
	n.b = framework.StartBerth(t, framework.Options{Args: append(args, o.Args...), Dir: o.Dir, NoRace: o.NoRace, NoWait: o.NoWait})
	t.Cleanup(func() {
		log := n.b.Log()
		if strings.Contains(log, "WARNING: DATA RACE") {
			r.Unexpected("the race detector found a data race in berth (its log has the report)")
		}
		if strings.Contains(log, "panic serving CRI call") {
			r.Unexpected("a CRI call panicked in berth (its log has the stack)")
		}
	})
	if o.NoWait {
		return n
	}
	n.dial()
	return n
}

// dial connects the node's raw client. Its calls wait for the connection
// rather than failing at once while the berth restarts, and it reconnects
// quickly (kubelet's client would too, more slowly).
func (n *node) dial() {
	n.t.Helper()
	conn, err := grpc.NewClient("unix://"+n.b.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.WaitForReady(true)))
	if err != nil {
		n.t.Fatal(err)
	}
	n.conn = conn
	n.rt = runtimeapi.NewRuntimeServiceClient(conn)
	n.img = runtimeapi.NewImageServiceClient(conn)
	n.t.Cleanup(func() { conn.Close() })
}

// ctx is a call's context: bounded by callTimeout.
func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// podConfig is a sandbox config with a unique uid, labelled with the run
// and the node.
func (n *node) podConfig(name string) *runtimeapi.PodSandboxConfig {
	uid := "uid-" + randomSuffix()
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "berth-torture", Uid: uid},
		Hostname:     name,
		Labels:       map[string]string{"berth-torture-run": runID, "berth-torture-node": n.id, "app": name},
		Annotations:  map[string]string{"berth.test/annotation": name},
		LogDirectory: filepath.Join(n.logDir, uid),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// containerConfig is a long-running busybox container.
func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: framework.TestImage},
		Command:  []string{"sh", "-c", "echo started; exec sleep 100000"},
		LogPath:  name + ".log",
		Labels:   map[string]string{"berth-torture-run": runID},
	}
}

// runPod runs a sandbox and returns its id.
func (n *node) runPod(cfg *runtimeapi.PodSandboxConfig) (string, error) {
	c, cancel := ctx()
	defer cancel()
	resp, err := n.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", err
	}
	return resp.PodSandboxId, nil
}

// startContainer creates and starts a container in a pod.
func (n *node) startContainer(podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) (string, error) {
	c, cancel := ctx()
	defer cancel()
	resp, err := n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		return "", err
	}
	if _, err := n.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return resp.ContainerId, err
	}
	return resp.ContainerId, nil
}

// removePod stops and removes a pod.
func (n *node) removePod(id string) error {
	c, cancel := ctx()
	defer cancel()
	if _, err := n.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return err
	}
	_, err := n.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

func (n *node) podStatus(id string) (*runtimeapi.PodSandboxStatus, error) {
	c, cancel := ctx()
	defer cancel()
	resp, err := n.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

func (n *node) containerStatus(id string) (*runtimeapi.ContainerStatus, error) {
	c, cancel := ctx()
	defer cancel()
	resp, err := n.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// pods lists the pods of this node.
func (n *node) pods() ([]*runtimeapi.PodSandbox, error) {
	c, cancel := ctx()
	defer cancel()
	resp, err := n.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"berth-torture-run": runID, "berth-torture-node": n.id}}})
	if err != nil {
		return nil, err
	}
	return resp.Items, nil
}

// removeAll stops and removes every pod of this node the berth lists.
func (n *node) removeAll() error {
	items, err := n.pods()
	if err != nil {
		return err
	}
	for _, p := range items {
		if err := n.removePod(p.Id); err != nil {
			return fmt.Errorf("removing pod %s: %w", p.Id, err)
		}
	}
	return nil
}

// runtimeReady reports Status's RuntimeReady condition.
func (n *node) runtimeReady() (bool, error) {
	c, cancel := ctx()
	defer cancel()
	st, err := n.rt.Status(c, &runtimeapi.StatusRequest{})
	if err != nil {
		return false, err
	}
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.Type == runtimeapi.RuntimeReady {
			return cond.Status, nil
		}
	}
	return false, fmt.Errorf("no RuntimeReady condition")
}

// leaks reports what the node's berth left behind once its pods are gone:
// Docker containers labelled with its root dir, checkpoints, CNI address
// allocations, interfaces on the pod bridge (each is the host end of a pod
// network namespace that was not torn down) and log position files.
func (n *node) leaks() []string {
	var out []string
	if ids, err := dockerIDs(n.docker, "label=io.berth.root="+n.b.RootDir); err != nil {
		out = append(out, fmt.Sprintf("listing containers: %v", err))
	} else if len(ids) > 0 {
		out = append(out, fmt.Sprintf("Docker containers: %v", ids))
	}
	for _, sub := range []string{"sandboxes", "logs"} {
		entries, _ := os.ReadDir(filepath.Join(n.b.RootDir, sub))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) > 0 {
			out = append(out, fmt.Sprintf("files in %s: %v", sub, names))
		}
	}
	if ips := n.net.AllocatedIPs(); len(ips) > 0 {
		out = append(out, fmt.Sprintf("CNI addresses still allocated: %v", ips))
	}
	if links := bridgePorts(n.net.Bridge); len(links) > 0 {
		out = append(out, fmt.Sprintf("pod network interfaces on bridge %s: %v", n.net.Bridge, links))
	}
	return out
}

// bridgePorts lists the interfaces enslaved to a bridge.
func bridgePorts(bridge string) []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	if err != nil {
		return nil // no bridge: no pod was ever attached
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// dockerCLI runs the docker CLI against host.
func dockerCLI(host string, args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// dockerIDs lists the ids of the containers (any state) matching a filter.
func dockerIDs(host, filter string) ([]string, error) {
	out, err := dockerCLI(host, "ps", "-a", "-q", "--no-trunc", "--filter", filter)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return strings.Fields(out), nil
}

// eventually retries fn until it returns nil or timeout passes, and
// returns its last error.
func eventually(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
