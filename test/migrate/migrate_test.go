// Package migrate tests `berth migrate` end to end against a real
// kube-apiserver and etcd: a Node registered for this host, pods bound to
// it (a DaemonSet's, a ReplicaSet's under a PodDisruptionBudget), kubelet's
// files in a temporary directory, two real runtimes (the one kubelet uses
// before, and Berth), and a stand-in systemctl (see standin/systemctl) that
// plays kubelet's restart: there is no real kubelet here.
package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berth-cri/berth/test/framework"
	"github.com/berth-cri/berth/test/framework/cluster"
)

const (
	ns                  = "migrate-test"
	criSocketAnnotation = "kubeadm.alpha.kubernetes.io/cri-socket"
)

func TestMain(m *testing.M) {
	if _, err := framework.RequireDocker(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "migrate tests: FAIL:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// node is this host as the test sets it up: kubelet's files, the runtime
// kubelet uses before the migration, Berth, and the stand-in systemctl.
type node struct {
	name         string
	dir          string
	kubeadmFlags string
	kubeletCfg   string
	defaults     string
	stateFile    string
	standinDir   string
	standinLog   string
	failRestart  string
	oldEndpoint  string
	newEndpoint  string
	kubeconfig   string
	kubeletPID   string
	// hostProc makes migrate look at the host's /proc (for kubelet's
	// connection) with --node given; otherwise at an empty process table,
	// deriving the node's name from the host name as kubelet does.
	hostProc bool
}

func TestMigrateAndRollBack(t *testing.T) {
	c := cluster.Start(t)
	ctx := context.Background()

	// The runtime kubelet uses before: another Berth standing in for
	// cri-dockerd (same CRI, same runtime name, same container names).
	old := framework.StartBerth(t, framework.Options{})
	berth := framework.StartBerth(t, framework.Options{})
	n := setUpNode(t, c, old.Endpoint, berth.Endpoint)
	origFlags := readFile(t, n.kubeadmFlags)
	origCfg := readFile(t, n.kubeletCfg)
	registerNode(t, c.Client, n)
	dsPod, webPods := createWorkloads(t, c.Client, n.name)

	// 1. Dry run: the plan, and nothing changed.
	out, code := n.migrate(t)
	if code != 0 {
		t.Fatalf("dry run exited %d:\n%s", code, out)
	}
	for _, want := range []string{"Plan:", "Dry run", "check-runtime", "Berth answers at " + berth.Endpoint,
		webPods[0], webPods[1], "DaemonSet", n.kubeadmFlags, n.kubeletCfg, "remove dockershim-only flags --network-plugin",
		old.Endpoint + " → " + berth.Endpoint, "restart kubelet"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "evict 3") || strings.Contains(out, dsPod+",") {
		t.Errorf("the plan evicts the DaemonSet's pod:\n%s", out)
	}
	if readFile(t, n.kubeadmFlags) != origFlags || readFile(t, n.kubeletCfg) != origCfg {
		t.Error("the dry run changed kubelet's files")
	}
	if getNode(t, c.Client, n.name).Spec.Unschedulable {
		t.Error("the dry run cordoned the node")
	}
	if _, err := os.Stat(n.stateFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run wrote a state file: %v", err)
	}
	if calls := n.systemctlCalls(t); len(calls) != 0 {
		t.Errorf("the dry run called systemctl: %v", calls)
	}

	// 2. --yes: the PodDisruptionBudget blocks the drain until it allows
	// disruptions; then the migration runs to the end, and kubelet (the
	// stand-in's process) is connected to Berth.
	n.hostProc = true
	proc := n.start(t, "--yes", "--drain-timeout", "3m")
	waitFor(t, 2*time.Minute, "eviction to be refused by the PodDisruptionBudget", func() bool {
		return strings.Contains(proc.output(), "disruption budget")
	})
	if !getNode(t, c.Client, n.name).Spec.Unschedulable {
		t.Error("node not cordoned while draining")
	}
	for _, p := range webPods {
		if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s gone although its PodDisruptionBudget allows no disruption: %v", p, err)
		}
	}
	if readFile(t, n.kubeadmFlags) != origFlags {
		t.Error("kubelet's files rewritten before the drain finished")
	}
	allowDisruptions(t, c.Client, 2)
	out, code = proc.wait(t, 3*time.Minute)
	if code != 0 {
		t.Fatalf("migrate --yes exited %d:\n%s", code, out)
	}

	flags := readFile(t, n.kubeadmFlags)
	if !strings.Contains(flags, "--container-runtime-endpoint="+berth.Endpoint) ||
		strings.Contains(flags, "--network-plugin") || !strings.Contains(flags, "--pod-infra-container-image=registry.k8s.io/pause:3.10") {
		t.Errorf("kubeadm-flags.env after migration:\n%s", flags)
	}
	if cfg := readFile(t, n.kubeletCfg); !strings.Contains(cfg, "containerRuntimeEndpoint: "+berth.Endpoint) ||
		!strings.Contains(cfg, "cgroupDriver: cgroupfs") || !strings.Contains(cfg, "# kept comment") {
		t.Errorf("KubeletConfiguration after migration:\n%s", cfg)
	}
	if readFile(t, n.kubeadmFlags+".pre-berth") != origFlags || readFile(t, n.kubeletCfg+".pre-berth") != origCfg {
		t.Error("backups differ from the original files")
	}
	nd := getNode(t, c.Client, n.name)
	if nd.Spec.Unschedulable {
		t.Error("node still cordoned after the migration")
	}
	if got := nd.Annotations[criSocketAnnotation]; got != berth.Endpoint {
		t.Errorf("annotation %s = %q, want %q", criSocketAnnotation, got, berth.Endpoint)
	}
	for _, p := range webPods {
		if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod %s not evicted: %v", p, err)
		}
	}
	if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, dsPod, metav1.GetOptions{}); err != nil {
		t.Errorf("the DaemonSet's pod %s was evicted: %v", dsPod, err)
	}
	calls := n.systemctlCalls(t)
	if !containsLine(calls, "restart kubelet") || !containsLine(calls, "kubelet endpoint "+berth.Endpoint) {
		t.Errorf("systemctl calls: %v", calls)
	}
	if !strings.Contains(out, "is connected to "+berth.Socket) {
		t.Errorf("migrate did not check kubelet's connection to Berth:\n%s", out)
	}

	// 3. Again: nothing to do, nothing done.
	out, code = n.migrate(t, "--yes")
	if code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("second migrate exited %d:\n%s", code, out)
	}
	if again := n.systemctlCalls(t); len(again) != len(calls) {
		t.Errorf("second migrate called systemctl: %v", again[len(calls):])
	}

	// 4. Rollback, interrupted: kubelet's restart fails; the steps before
	// it are done and recorded, and a rerun resumes at the restart.
	if err := os.WriteFile(n.failRestart, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = n.migrate(t, "--rollback", "--yes")
	if code == 0 || !strings.Contains(out, "step restart-kubelet") {
		t.Fatalf("rollback with a failing restart exited %d:\n%s", code, out)
	}
	if readFile(t, n.kubeadmFlags) != origFlags || readFile(t, n.kubeletCfg) != origCfg {
		t.Error("files not restored before the restart step")
	}
	if got := getNode(t, c.Client, n.name).Annotations[criSocketAnnotation]; got != old.Endpoint {
		t.Errorf("annotation after rollback = %q, want %q", got, old.Endpoint)
	}
	os.Remove(n.failRestart)
	before := len(n.systemctlCalls(t))
	out, code = n.migrate(t, "--rollback", "--yes")
	if code != 0 {
		t.Fatalf("resumed rollback exited %d:\n%s", code, out)
	}
	for _, step := range []string{"] cordon", "] drain", "] restore-files", "] annotate"} {
		if strings.Contains(out, step) {
			t.Errorf("resumed rollback ran %q again:\n%s", step, out)
		}
	}
	if !strings.Contains(out, "is connected to "+old.Socket) {
		t.Errorf("rollback did not check kubelet's connection to the previous runtime:\n%s", out)
	}
	resumed := n.systemctlCalls(t)[before:]
	if !containsLine(resumed, "restart kubelet") || !containsLine(resumed, "kubelet endpoint "+old.Endpoint) {
		t.Errorf("systemctl calls of the resumed rollback: %v", resumed)
	}
	nd = getNode(t, c.Client, n.name)
	if nd.Spec.Unschedulable {
		t.Error("node cordoned after the rollback")
	}
	for _, f := range []string{n.stateFile, n.kubeadmFlags + ".pre-berth", n.kubeletCfg + ".pre-berth"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the rollback: %v", f, err)
		}
	}

	// 5. With Berth down, the migration stops before touching anything.
	_ = berth.Stop()
	out, code = n.migrate(t, "--yes")
	if code == 0 || !strings.Contains(out, "does not answer") {
		t.Errorf("migrate with Berth down exited %d:\n%s", code, out)
	}
	if getNode(t, c.Client, n.name).Spec.Unschedulable || readFile(t, n.kubeadmFlags) != origFlags {
		t.Error("migrate acted although Berth is down")
	}
}

func setUpNode(t *testing.T, c *cluster.Cluster, oldEndpoint, newEndpoint string) *node {
	t.Helper()
	dir := t.TempDir()
	// The Node is this host's, as kubelet registers it: berth migrate is
	// given no --node and must derive the name the way kubelet does.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		name:         strings.ToLower(host),
		dir:          dir,
		kubeadmFlags: filepath.Join(dir, "kubeadm-flags.env"),
		kubeletCfg:   filepath.Join(dir, "config.yaml"),
		defaults:     filepath.Join(dir, "default-kubelet"),
		stateFile:    filepath.Join(dir, "state", "migrate-state.json"),
		standinDir:   filepath.Join(dir, "bin"),
		standinLog:   filepath.Join(dir, "systemctl.log"),
		failRestart:  filepath.Join(dir, "fail-restart"),
		kubeletPID:   filepath.Join(dir, "kubelet.pid"),
		oldEndpoint:  oldEndpoint,
		newEndpoint:  newEndpoint,
		kubeconfig:   c.Kubeconfig,
	}
	writeFile(t, n.kubeadmFlags, `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=`+oldEndpoint+` --pod-infra-container-image=registry.k8s.io/pause:3.10 --network-plugin=cni"`+"\n")
	writeFile(t, n.kubeletCfg, `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# kept comment
cgroupDriver: cgroupfs
containerRuntimeEndpoint: `+oldEndpoint+`
`)
	if err := os.MkdirAll(n.standinDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The stand-in kubelet outlives each systemctl call; end it by pid.
		if data, err := os.ReadFile(n.kubeletPID); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	build := exec.Command("go", "build", "-o", filepath.Join(n.standinDir, "systemctl"), "./test/migrate/standin/systemctl")
	build.Dir = framework.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in systemctl: %v\n%s", err, out)
	}
	return n
}

// args are the flags every migrate run gets: this node's files, not the
// host's.
func (n *node) args(extra ...string) []string {
	args := []string{"migrate",
		"--kubeconfig", n.kubeconfig,
		"--runtime-endpoint", n.newEndpoint,
		"--kubeadm-flags-file", n.kubeadmFlags,
		"--kubelet-config", n.kubeletCfg,
		"--kubelet-defaults-file", n.defaults,
		"--state-file", n.stateFile,
		"--ready-timeout", "1m",
	}
	if n.hostProc {
		args = append(args, "--proc-root", "/proc", "--node", n.name)
	} else {
		args = append(args, "--proc-root", filepath.Join(n.dir, "no-proc"))
	}
	return append(args, extra...)
}

func (n *node) command(t *testing.T, extra ...string) *exec.Cmd {
	t.Helper()
	bin, err := framework.Binary()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.dir, "no-proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, n.args(extra...)...)
	// The stand-in systemctl comes first on PATH for this process only.
	cmd.Env = append(os.Environ(),
		"PATH="+n.standinDir+":"+os.Getenv("PATH"),
		"STANDIN_LOG="+n.standinLog,
		"STANDIN_KUBECONFIG="+n.kubeconfig,
		"STANDIN_NODE="+n.name,
		"STANDIN_KUBEADM_FLAGS="+n.kubeadmFlags,
		"STANDIN_KUBELET_CONFIG="+n.kubeletCfg,
		"STANDIN_FAIL_RESTART="+n.failRestart,
		"STANDIN_KUBELET_PID="+n.kubeletPID,
	)
	return cmd
}

// migrate runs berth migrate to the end and returns its output and exit code.
func (n *node) migrate(t *testing.T, extra ...string) (string, int) {
	t.Helper()
	cmd := n.command(t, extra...)
	out, err := cmd.CombinedOutput()
	t.Logf("berth %s:\n%s", strings.Join(extra, " "), out)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return string(out), exitErr.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

func (n *node) start(t *testing.T, extra ...string) *process {
	t.Helper()
	p := &process{cmd: n.command(t, extra...), out: &lockedBuffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(p.out, sc.Text())
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) output() string { return p.out.String() }

func (p *process) wait(t *testing.T, timeout time.Duration) (string, int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("berth migrate did not finish within %v:\n%s", timeout, p.output())
	}
	time.Sleep(100 * time.Millisecond) // let the reader drain the pipe
	t.Logf("berth migrate --yes:\n%s", p.output())
	var exitErr *exec.ExitError
	if errors.As(p.err, &exitErr) {
		return p.output(), exitErr.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.output(), 0
}

func (n *node) systemctlCalls(t *testing.T) []string {
	data, err := os.ReadFile(n.standinLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// registerNode creates the Node as kubelet would on its first start with
// the old runtime: Ready, with the runtime's version and kubeadm's
// cri-socket annotation.
func registerNode(t *testing.T, client kubernetes.Interface, n *node) {
	t.Helper()
	ctx := context.Background()
	nd, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        n.name,
		Labels:      map[string]string{"kubernetes.io/hostname": n.name},
		Annotations: map[string]string{criSocketAnnotation: n.oldEndpoint},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	nd.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
	nd.Status.NodeInfo.ContainerRuntimeVersion = "docker://before"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, nd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func getNode(t *testing.T, client kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	nd, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return nd
}

// createWorkloads binds pods to the node as the scheduler would and marks
// them running as kubelet would: one of a DaemonSet, two of a ReplicaSet
// under a PodDisruptionBudget that allows no disruption.
func createWorkloads(t *testing.T, client kubernetes.Interface, nodeName string) (string, []string) {
	t.Helper()
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	podSpec := corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: framework.TestImage}},
		// No kubelet confirms a graceful deletion here, so the pods have
		// no grace period: the API server removes an evicted pod at once.
		TerminationGracePeriodSeconds: new(int64),
	}
	ds, err := client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}}, Spec: podSpec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	rs, err := client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: podSpec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	makePod := func(name, app string, owner metav1.OwnerReference) string {
		spec := podSpec
		spec.NodeName = nodeName
		p, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app},
				OwnerReferences: []metav1.OwnerReference{owner}},
			Spec: spec,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	dsPod := makePod("agent-x7k2p", "agent", metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: &yes})
	web := []string{
		makePod("web-5d8f9", "web", metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}),
		makePod("web-q2m4t", "web", metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}),
	}

	minAvailable := intstr.FromInt32(1)
	pdb, err := client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No disruption controller runs here; the test sets the budget's
	// status as it would: observed, and (for now) no disruption allowed.
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation,
		DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 2}
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dsPod, web
}

// allowDisruptions updates the budget's status as the disruption controller
// would once enough replicas are healthy elsewhere.
func allowDisruptions(t *testing.T, client kubernetes.Interface, n int32) {
	t.Helper()
	ctx := context.Background()
	pdb, err := client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pdb.Status.DisruptionsAllowed = n
	pdb.Status.CurrentHealthy = 1 + n
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
