package kubelet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
	"github.com/berth-cri/berth/test/framework/cluster"
)

// The kubelet start-up benchmark (make bench-kubelet, docs/performance.md):
// a real kubelet registered with a real kube-apiserver starts a batch of
// pods bound to its node, all created at once, on Berth (with and without
// the EventedPLEG gate) and on containerd 2.x, and reports what kubelet
// itself measures (kubelet_pod_start_sli_duration_seconds, the start-up
// SLI of Kubernetes' scalability tests, which kubelet records only for
// pods from the API server, never for static ones), each pod's start-up as
// a client watching the API (an informer) sees it, the time until all of
// them run, and the CPU and memory of the runtime and of kubelet meanwhile.
const (
	// startupPodsEnv overrides how many pods a run starts (30).
	startupPodsEnv = "BERTH_BENCH_STARTUP_PODS"
	// containerdEndpointEnv is containerd's CRI endpoint, as for bench/
	// (hack/setup-containerd.sh env sets it); containerd is left out
	// without it.
	containerdEndpointEnv = "BERTH_BENCH_CONTAINERD_ENDPOINT"
	startupNamespace      = "default"
	// sampleEvery is how often the runtime's CPU and memory are read.
	sampleEvery = time.Second
)

// startupRuntime is one runtime the benchmark runs kubelet on.
type startupRuntime struct {
	id    string // the sub-benchmark's name
	gates map[string]bool
	// containerd is containerd's CRI endpoint; empty for Berth.
	containerd string
}

// BenchmarkPodStartup runs one batch per iteration on each runtime, one
// runtime after the other, on the same API server and the same private
// Docker daemon (make bench-kubelet runs three: -benchtime 3x).
func BenchmarkPodStartup(b *testing.B) {
	framework.LockKubeletHost(b, "kubelet start-up benchmark")
	bin := kubeletBinary(b)
	c := cluster.Start(b)
	d, _ := startSuiteDocker(b)
	n := 30
	if v := os.Getenv(startupPodsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a number of pods", startupPodsEnv, v)
		}
	}
	runtimes := []startupRuntime{
		{id: "berth"},
		{id: "berth-evented-pleg", gates: map[string]bool{"EventedPLEG": true}},
	}
	if ep := os.Getenv(containerdEndpointEnv); ep != "" {
		runtimes = append(runtimes, startupRuntime{id: "containerd", containerd: ep})
	} else {
		b.Logf("%s is not set: no containerd figures (eval \"$(hack/setup-containerd.sh env)\")", containerdEndpointEnv)
	}
	for _, rt := range runtimes {
		b.Run(rt.id, func(b *testing.B) {
			var all startupRun
			for range b.N {
				all.add(runStartup(b, rt, bin, c, d, n))
			}
			all.report(b, n)
		})
	}
}

// startupRun is what one or more batches measured.
type startupRun struct {
	sli       histogram             // kubelet's pod_start_sli_duration_seconds
	sliLogged []float64             // the same observations, exact, from kubelet's log
	watched   []time.Duration       // each pod's create call to its Running on the informer
	allSecs   []float64             // each batch's first create to last Running
	runtime   []framework.CPUSample // the CRI server's process
	stack     []framework.CPUSample // with the engine and shims: Berth, dockerd, its containerd, shims; containerd, shims
	kubelet   []framework.CPUSample
	cpuSecs   map[string]float64 // CPU seconds of each process set, summed over batches
	batchSecs float64
}

func (r *startupRun) add(o startupRun) {
	r.sli.add(o.sli)
	r.sliLogged = append(r.sliLogged, o.sliLogged...)
	r.watched = append(r.watched, o.watched...)
	r.allSecs = append(r.allSecs, o.allSecs...)
	r.runtime = append(r.runtime, o.runtime...)
	r.stack = append(r.stack, o.stack...)
	r.kubelet = append(r.kubelet, o.kubelet...)
	if r.cpuSecs == nil {
		r.cpuSecs = map[string]float64{}
	}
	for k, v := range o.cpuSecs {
		r.cpuSecs[k] += v
	}
	r.batchSecs += o.batchSecs
}

func (r *startupRun) report(b *testing.B, n int) {
	slices.Sort(r.sliLogged)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		p := int(math.Round(q * 100))
		b.ReportMetric(quantile(r.sliLogged, q), fmt.Sprintf("sli-p%d-s", p))
		b.ReportMetric(r.sli.quantile(q), fmt.Sprintf("sli-hist-p%d-s", p))
		b.ReportMetric(quantileDuration(r.watched, q).Seconds(), fmt.Sprintf("watch-p%d-s", p))
	}
	slices.Sort(r.allSecs)
	b.ReportMetric(r.allSecs[len(r.allSecs)/2], "all-running-s")
	for _, set := range []struct {
		name    string
		samples []framework.CPUSample
	}{{"runtime", r.runtime}, {"stack", r.stack}, {"kubelet", r.kubelet}} {
		if len(set.samples) == 0 {
			continue
		}
		cores := make([]float64, 0, len(set.samples))
		peakRSS, procs := 0.0, 0
		for _, s := range set.samples {
			cores = append(cores, s.Cores)
			peakRSS = max(peakRSS, s.RSSMiB)
			procs = max(procs, s.Procs)
		}
		slices.Sort(cores)
		b.ReportMetric(quantile(cores, 0.5), set.name+"-cores-p50")
		b.ReportMetric(quantile(cores, 0.95), set.name+"-cores-p95")
		b.ReportMetric(r.cpuSecs[set.name]/r.batchSecs, set.name+"-cores-mean")
		// The peak RSS while the pods started (runc's processes come and
		// go), and the PSS once all of them ran (the last batch's).
		end := set.samples[len(set.samples)-1]
		b.ReportMetric(peakRSS, set.name+"-rss-peak-MiB")
		b.ReportMetric(end.PSSMiB, set.name+"-pss-end-MiB")
		b.Logf("%s: up to %d processes, %d at the end", set.name, procs, end.Procs)
	}
	b.Logf("%d pods a batch: kubelet's SLI histogram has %d observations, its log %d", n, r.sli.count, len(r.sliLogged))
}

// batch is the benchmark as a batch's helpers see it: the cleanups they
// register run when the batch ends, not when the benchmark does, so that
// each batch has its own Berth, network and kubelet, and none of an
// earlier batch's is still there, at work on the same Docker daemon.
type batch struct {
	*testing.B
	cleanups []func()
}

func (t *batch) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// finish runs the batch's cleanups, last registered first.
func (t *batch) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// runStartup starts kubelet on rt, waits for its node to be Ready, creates
// n pods at once and measures until all run, then deletes them and stops
// kubelet; everything it made goes before it returns.
func runStartup(b *testing.B, rt startupRuntime, bin string, c *cluster.Cluster, d *framework.Dockerd, n int) startupRun {
	t := &batch{B: b}
	defer t.finish()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	dir, err := os.MkdirTemp("", "bk-")
	if err != nil {
		b.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeping %s for inspection", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	nodeName := "berth-startup-" + suffix
	guard := guardHost(t, "/berth-startup-"+suffix, dir)

	var endpoint string
	var runtimeSet, stackSet framework.ProcSet
	if rt.containerd == "" {
		net := framework.NewCNINetwork(t, framework.CNIOptions{})
		br := framework.StartBerth(t, framework.Options{
			Args: append([]string{"--docker-endpoint", d.Host, "--log-level", "info"}, net.Args()...),
		})
		t.Cleanup(func() { sweepPods(t, br) })
		endpoint = br.Endpoint
		runtimeSet = framework.ProcSet{Roots: []int{br.Pid()}}
		stackSet = d.StackProcs(br.Pid())
	} else {
		endpoint = rt.containerd
		var err error
		if runtimeSet, stackSet, err = framework.ContainerdProcs(rt.containerd); err != nil {
			b.Fatal(err)
		}
		cri := framework.ConnectCRI(t, rt.containerd)
		t.Cleanup(func() { removeSandboxes(t, cri, "startup-"+suffix+"-") })
	}

	opts := kubeletOptions{
		NodeName:        nodeName,
		RuntimeEndpoint: endpoint,
		Port:            framework.FreePort(t),
		CgroupRoot:      guard.cgroupRoot,
		PodLogsDir:      filepath.Join(dir, "pod-logs"),
		VolumePluginDir: filepath.Join(dir, "volume-plugins"),
		FeatureGates:    rt.gates,
		// system:masters: there is no Node authorizer on this API server
		// (only RBAC), and this kubelet is a throw-away one.
		Kubeconfig: c.UserKubeconfig(t, "kubelet-"+suffix, "system:node:"+nodeName, "system:nodes", "system:masters"),
	}
	k := startKubelet(t, bin, dir, opts)
	nodes := c.Client.CoreV1().Nodes()
	t.Cleanup(func() { _ = nodes.Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })
	waitUntil(b, k, 3*time.Minute, "node "+nodeName+" Ready", func(ctx context.Context) error {
		node, err := nodes.Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("Ready %s: %s", cond.Status, cond.Message)
			}
		}
		return fmt.Errorf("no Ready condition yet")
	})

	pods := c.Client.CoreV1().Pods(startupNamespace)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex // guards running
	running := map[string]time.Time{}
	allRunning := make(chan struct{})
	observe := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || !podStarted(p) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := running[p.Name]; !seen {
			running[p.Name] = time.Now()
			if len(running) == n {
				close(allRunning)
			}
		}
	}
	// An informer, as kubelet's and every controller's: a plain watch
	// started this soon after the API server fails with "too large
	// resource version" while its watch cache catches up.
	lw := cache.NewListWatchFromClient(c.Client.CoreV1().RESTClient(), "pods", startupNamespace,
		fields.OneTermEqualSelector("spec.nodeName", nodeName))
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    observe,
			UpdateFunc: func(_, obj any) { observe(obj) },
		},
	})
	go informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		b.Fatal("the pod informer never synced")
	}

	sets := map[string]framework.ProcSet{"runtime": runtimeSet, "stack": stackSet, "kubelet": {Roots: []int{k.cmd.Process.Pid}}}
	sampler := framework.StartSampler(sets, sampleEvery)
	created := make([]time.Time, n)
	names := make([]string, n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		names[i] = fmt.Sprintf("startup-%s-%d", suffix, i)
		wg.Go(func() {
			created[i] = time.Now()
			if _, err := pods.Create(ctx, startupPod(names[i], nodeName), metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	// Registered after kubelet's start, so it runs before kubelet stops:
	// kubelet removes the containers and their /var/log/containers links.
	t.Cleanup(func() { deleteBatch(t, k, pods, nodeName, "startup-"+suffix+"-") })
	close(errs)
	for err := range errs {
		b.Fatalf("creating a pod: %v", err)
	}
	deadline := time.NewTimer(framework.Scaled(5 * time.Minute))
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-allRunning:
			break wait
		case <-deadline.C:
			mu.Lock()
			got := len(running)
			mu.Unlock()
			b.Fatalf("%d of %d pods running after 5 minutes", got, n)
		case <-tick.C:
			if k.Exited() {
				b.Fatalf("kubelet exited:\n%s", k.tail(40))
			}
		}
	}
	samples, cpuSecs := sampler.Stop()
	var r startupRun
	mu.Lock()
	last := start
	for i, name := range names {
		r.watched = append(r.watched, running[name].Sub(created[i]))
		if running[name].After(last) {
			last = running[name]
		}
	}
	mu.Unlock()
	r.allSecs = []float64{last.Sub(start).Seconds()}
	r.batchSecs = last.Sub(start).Seconds()
	r.runtime, r.stack, r.kubelet = samples["runtime"], samples["stack"], samples["kubelet"]
	r.cpuSecs = cpuSecs
	r.sli = kubeletSLI(b, k, opts, nodeName)
	r.sliLogged = loggedSLI(k.Log(), "startup-"+suffix+"-")

	deleteBatch(t, k, pods, nodeName, "startup-"+suffix+"-")
	k.Stop()
	return r
}

// deleteBatch deletes the node's pods and waits until kubelet has removed
// them (it deletes each pod's object once its containers have stopped) and
// their containers (its container GC, once a minute, removes the dead
// containers of deleted pods, and their /var/log/containers links, named
// after the pod: prefix).
func deleteBatch(b testing.TB, k *kubeletProcess, pods typedcorev1.PodInterface, nodeName, prefix string) {
	if k.Exited() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName}
	list, err := pods.List(ctx, onNode)
	if err != nil {
		b.Errorf("listing the pods: %v", err)
		return
	}
	for _, p := range list.Items {
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			b.Errorf("deleting pod %s: %v", p.Name, err)
		}
	}
	waitUntil(b, k, 5*time.Minute, "the pods deleted", func(ctx context.Context) error {
		list, err := pods.List(ctx, onNode)
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
	waitUntil(b, k, 5*time.Minute, "kubelet removing the containers", func(context.Context) error {
		links, _ := filepath.Glob(filepath.Join("/var/log/containers", prefix+"*"))
		if len(links) > 0 {
			return fmt.Errorf("%d log links left, e.g. %s", len(links), links[0])
		}
		return nil
	})
}

// startupPod is one pod of a batch: one container, the suite's image
// (never pulled: the SLI leaves pulls out anyway), bound to the node.
func startupPod(name, nodeName string) *corev1.Pod {
	grace := int64(1)
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: startupNamespace},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sleep", "3600"},
			}},
		},
	}
}

// podStarted is kubelet's SLI condition: the pod runs and every container
// has started.
func podStarted(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

// waitUntil polls f until it succeeds; it fails b when timeout passes or
// kubelet exits. The timeout bounds a hang; it measures nothing.
func waitUntil(b testing.TB, k *kubeletProcess, timeout time.Duration, what string, f func(context.Context) error) {
	b.Helper()
	deadline := time.Now().Add(framework.Scaled(timeout))
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if k.Exited() {
			b.Fatalf("%s: kubelet exited (last error: %v):\n%s", what, err, k.tail(40))
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubeletSLI reads kubelet_pod_start_sli_duration_seconds from kubelet's
// /metrics.
func kubeletSLI(b *testing.B, k *kubeletProcess, o kubeletOptions, nodeName string) histogram {
	b.Helper()
	kc, err := newKubeletClient(o.Port, filepath.Join(k.CertDir, "kubelet.crt"), nodeName)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	text, err := kc.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	fams, err := parseMetrics(text)
	if err != nil {
		b.Fatal(err)
	}
	const name = "kubelet_pod_start_sli_duration_seconds"
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram() == nil {
		b.Fatalf("kubelet's /metrics has no %s", name)
	}
	return histogramOf(f.GetMetric()[0].GetHistogram())
}

// sliLine is what kubelet logs as it observes a pod's start-up SLI (its
// histogram's buckets are seconds apart: 5, 6, 8, 10).
var sliLine = regexp.MustCompile(`"Observed pod startup duration" pod="[^/"]*/([^"]+)" podStartSLOduration=([0-9.e+-]+)`)

// loggedSLI is the podStartSLOduration kubelet logged for each pod whose
// name starts with prefix.
func loggedSLI(log, prefix string) []float64 {
	var out []float64
	for _, m := range sliLine.FindAllStringSubmatch(log, -1) {
		if !strings.HasPrefix(m[1], prefix) {
			continue
		}
		if v, err := strconv.ParseFloat(m[2], 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// histogram is a Prometheus histogram: cumulative counts by upper bound.
type histogram struct {
	bounds []float64
	counts []uint64 // cumulative
	count  uint64
}

func histogramOf(h *dto.Histogram) histogram {
	var out histogram
	for _, bk := range h.GetBucket() {
		out.bounds = append(out.bounds, bk.GetUpperBound())
		out.counts = append(out.counts, bk.GetCumulativeCount())
	}
	out.count = h.GetSampleCount()
	return out
}

func (h *histogram) add(o histogram) {
	if h.bounds == nil {
		h.bounds = o.bounds
		h.counts = make([]uint64, len(o.counts))
	}
	for i := range o.counts {
		h.counts[i] += o.counts[i]
	}
	h.count += o.count
}

// quantile interpolates linearly within the bucket holding the q-th
// observation, as Prometheus's histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, bound := range h.bounds {
		if float64(h.counts[i]) >= rank {
			in := h.counts[i] - below
			if in == 0 {
				return bound
			}
			return lower + (bound-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = bound, h.counts[i]
	}
	return lower // in the +Inf bucket: the highest finite bound
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func quantileDuration(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// removeSandboxes stops and removes the pod sandboxes whose pod name
// starts with prefix (a shared runtime's other pods are not this run's).
func removeSandboxes(b testing.TB, rt internalapi.RuntimeService, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sandboxes, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{})
	if err != nil {
		b.Errorf("listing pod sandboxes: %v", err)
		return
	}
	for _, sb := range sandboxes {
		if !strings.HasPrefix(sb.GetMetadata().GetName(), prefix) {
			continue
		}
		if err := rt.StopPodSandbox(ctx, sb.Id); err != nil {
			b.Errorf("stopping pod %s: %v", sb.GetMetadata().GetName(), err)
		}
		if err := rt.RemovePodSandbox(ctx, sb.Id); err != nil {
			b.Errorf("removing pod %s: %v", sb.GetMetadata().GetName(), err)
		}
	}
}
