package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/moby/moby/client"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/test/framework"
)

var sideBySidePods = flag.Int("sidebyside.pods", 50, "how many pods (one container each) BenchmarkSideBySide runs on each runtime (at most 250: each fleet's CNI network is a /24)")

// containerdEndpointEnv names containerd's CRI endpoint, when there is one
// to compare with (hack/setup-containerd.sh env sets it).
const containerdEndpointEnv = "BERTH_BENCH_CONTAINERD_ENDPOINT"

// fleetLabel marks which fleet a pod or container belongs to: every list
// and stats call of the benchmark selects one fleet, so that no runtime
// counts another's pods (Berth sees the raw Docker pods too).
const fleetLabel = "berth-bench-fleet"

// BenchmarkSideBySide answers the question users choosing a runtime ask:
// kubelet's calls on a node with -sidebyside.pods pods (50 by default, one
// container each), on Berth, on the same work done directly on the Docker
// API and CNI (raw Docker), and on containerd's CRI plugin when
// BERTH_BENCH_CONTAINERD_ENDPOINT names its socket — interleaved, call by
// call, in one run, so the machine's load weighs on all alike. Berth and
// raw Docker share a private Docker daemon of the suite's engine (Debian's
// 20.10, or the current engine with `hack/setup-docker-current.sh env`),
// as BenchmarkStats does.
//
// The three fleets are grown one pod at a time, round robin; then each
// sub-benchmark makes one call per iteration on each runtime, at full size,
// and reports the median latency of each (berth-ms, docker-ms,
// containerd-ms):
//
//   - Start: no calls of its own; the medians of RunPodSandbox (-run-ms),
//     CreateContainer (-create-ms) and StartContainer (-start-ms) while the
//     fleets grew, and the time each took to start all its pods one at a
//     time (-all-s);
//   - RunPodSandbox: one more pod, removed again untimed;
//   - CreateStartContainer: one more container in a running pod, created and
//     started (create and start also reported apart), removed untimed;
//   - PodSandboxStatus, ContainerStatus: against Docker's inspect;
//   - ListPodSandbox, ListContainers: one fleet's, against Docker's
//     label-filtered list;
//   - ListContainerStats, ListPodSandboxStats: one fleet's; no Docker figure
//     (the Docker way is a one-shot stats call per container, a second or
//     more a round: BenchmarkStats measures it).
//
// Run it with containerd (hack/setup-containerd.sh starts one):
//
//	eval "$(hack/setup-containerd.sh env)"
//	go test -run '^$' -bench SideBySide -benchtime 20x -timeout 60m ./bench/
func BenchmarkSideBySide(b *testing.B) {
	ctx := context.Background()
	pods := *sideBySidePods
	// A private daemon: no other Berth (and no kubelet behind one) sees
	// these pods, and theirs do not weigh on these figures.
	d := framework.StartDockerd(b, "")
	loadImage(b, d.Host, framework.TestImage)
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--docker-endpoint", d.Host, "--log-level", "info",
		"--metrics-address", "127.0.0.1:0")})
	// NOTE: the clients are closed in cleanups registered before the one
	// that removes the fleets, so that they are still open when it runs
	// (a defer would close them first).
	dc, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dc.Close() })
	// Raw Docker's pods get a network of their own, with the same plugins:
	// each network is a /24, and two fleets of 200 would not fit in one.
	rawNet := framework.NewCNINetwork(b, framework.CNIOptions{})
	list, _, err := network.LoadConfig(rawNet.ConfDir, []string{framework.CNIBinDir})
	if err != nil {
		b.Fatal(err)
	}
	// Each pod gets a cgroup parent of its own under this one, as kubelet
	// gives them (containerd's ListPodSandboxStats fails on a pod without).
	parent := "/berth-bench-" + framework.UniqueName("sbs")[4:]
	b.Cleanup(func() { removeCgroupTree(parent) })
	logs := b.TempDir()
	raw := &rawFleet{fleetBase: fleetBase{name: "docker", logs: logs, parent: parent}, dc: dc,
		cni: libcni.NewCNIConfigWithCacheDir([]string{framework.CNIBinDir}, b.TempDir(), nil), list: list}
	berth := &criFleet{fleetBase: fleetBase{name: "berth", logs: logs, parent: parent}, rt: br.Runtime}
	// fleets are in the order of the first iteration; each iteration starts
	// one later, so that no runtime always follows the same one.
	fleets := []fleet{berth}
	var ctrd *criFleet
	if ep := os.Getenv(containerdEndpointEnv); ep != "" {
		rt := framework.ConnectCRI(b, ep)
		v, err := rt.Version(ctx, "v1")
		if err != nil {
			b.Fatalf("containerd at %s: %v", ep, err)
		}
		b.Logf("containerd: %s %s at %s", v.RuntimeName, v.RuntimeVersion, ep)
		ctrd = &criFleet{fleetBase: fleetBase{name: "containerd", logs: logs, parent: parent}, rt: rt}
		fleets = append(fleets, ctrd)
	} else {
		b.Logf("%s is not set: no containerd figures (eval \"$(hack/setup-containerd.sh env)\")", containerdEndpointEnv)
	}
	fleets = append(fleets, raw)
	cris := []*criFleet{berth}
	if ctrd != nil {
		cris = append(cris, ctrd)
	}
	b.Cleanup(func() {
		start := time.Now()
		var wg sync.WaitGroup
		for _, f := range fleets {
			wg.Go(func() { f.removeAll(ctx) })
		}
		wg.Wait()
		b.Logf("removed the fleets in %v", time.Since(start).Round(time.Second))
	})

	// Warm up each runtime (Berth builds its pause image on its first pod).
	for _, f := range fleets {
		p, _, err := f.addPod(ctx, "warm", 0)
		if err == nil {
			err = f.removePod(ctx, p)
		}
		if err != nil {
			b.Fatalf("%s: %v", f.base().name, err)
		}
	}

	// Grow the fleets, round robin.
	growth := map[string][]time.Duration{}
	total := map[string]time.Duration{}
	callsBefore := dockerCalls(b, br)
	for i := range pods {
		rotate(fleets, i, func(f fleet) {
			fb := f.base()
			p, t, err := f.addPod(ctx, "fleet", i)
			if err != nil {
				b.Fatalf("%s: pod %d: %v", fb.name, i, err)
			}
			fb.pods = append(fb.pods, p)
			growth[fb.name+"-run"] = append(growth[fb.name+"-run"], t.run)
			growth[fb.name+"-create"] = append(growth[fb.name+"-create"], t.create)
			growth[fb.name+"-start"] = append(growth[fb.name+"-start"], t.start)
			total[fb.name] += t.run + t.create + t.start
		})
	}
	// What Berth asked of Docker per pod (sandbox, container, start): the
	// raw fleet makes create, start and inspect of the pause container,
	// then create and start of the container.
	logDockerCalls(b, "pod", callsBefore, dockerCalls(b, br), pods)
	// Start reports the growth: the medians of each call while the fleets
	// grew, and the time each fleet took to start all its pods, one at a
	// time. It measures nothing itself (ns/op is 0).
	b.Run("Start", func(b *testing.B) {
		reportSeries(b, growth)
		if d, br := median(growth["docker-run"]), median(growth["berth-run"]); d > 0 {
			b.ReportMetric(100*(float64(br)/float64(d)-1), "run-overhead-%")
		}
		for name, d := range total {
			b.ReportMetric(d.Seconds(), name+"-all-s")
		}
		b.ReportMetric(0, "ns/op")
	})

	// each makes one call per runtime per iteration, rotating the order, and
	// reports the medians; a runtime without a call is left out.
	each := func(b *testing.B, calls map[string]func(i int) error) {
		series := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			rotate(fleets, i, func(f fleet) {
				name := f.base().name
				call := calls[name]
				if call == nil {
					return
				}
				start := time.Now()
				if err := call(i); err != nil {
					b.Fatalf("%s: %v", name, err)
				}
				series[name] = append(series[name], time.Since(start))
			})
		}
		reportSeries(b, series)
	}
	// forCRI is a call made the same way on Berth and containerd.
	forCRI := func(calls map[string]func(i int) error, call func(f *criFleet, i int) error) map[string]func(i int) error {
		for _, f := range cris {
			calls[f.name] = func(i int) error { return call(f, i) }
		}
		return calls
	}
	b.Run("RunPodSandbox", func(b *testing.B) {
		series := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			rotate(fleets, i, func(f fleet) {
				name := f.base().name
				p, t, err := f.addSandbox(ctx, "extra", i)
				if err == nil {
					series[name] = append(series[name], t)
					err = f.removePod(ctx, p)
				}
				if err != nil {
					b.Fatalf("%s: %v", name, err)
				}
			})
		}
		reportSeries(b, series)
	})
	b.Run("CreateStartContainer", func(b *testing.B) {
		series := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			rotate(fleets, i, func(f fleet) {
				fb := f.base()
				id, t, err := f.addContainer(ctx, fb.pods[i%len(fb.pods)], fmt.Sprintf("extra%d", i))
				if err == nil {
					series[fb.name] = append(series[fb.name], t.create+t.start)
					series[fb.name+"-create"] = append(series[fb.name+"-create"], t.create)
					series[fb.name+"-start"] = append(series[fb.name+"-start"], t.start)
					err = f.removeContainer(ctx, id)
				}
				if err != nil {
					b.Fatalf("%s: %v", fb.name, err)
				}
			})
		}
		reportSeries(b, series)
	})
	b.Run("PodSandboxStatus", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{"docker": func(i int) error {
			_, err := dc.ContainerInspect(ctx, raw.pods[i%len(raw.pods)].sandbox, client.ContainerInspectOptions{})
			return err
		}}, func(f *criFleet, i int) error {
			_, err := f.rt.PodSandboxStatus(ctx, f.pods[i%len(f.pods)].sandbox, false)
			return err
		}))
	})
	b.Run("ContainerStatus", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{"docker": func(i int) error {
			_, err := dc.ContainerInspect(ctx, raw.pods[i%len(raw.pods)].container, client.ContainerInspectOptions{})
			return err
		}}, func(f *criFleet, i int) error {
			_, err := f.rt.ContainerStatus(ctx, f.pods[i%len(f.pods)].container, false)
			return err
		}))
	})
	b.Run("ListPodSandbox", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{"docker": func(int) error {
			return raw.listKind(ctx, "podsandbox", pods)
		}}, func(f *criFleet, _ int) error {
			items, err := f.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: f.selector()})
			return wantCount("ListPodSandbox", len(items), pods, err)
		}))
	})
	b.Run("ListContainers", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{"docker": func(int) error {
			return raw.listKind(ctx, "container", pods)
		}}, func(f *criFleet, _ int) error {
			items, err := f.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: f.selector()})
			return wantCount("ListContainers", len(items), pods, err)
		}))
	})
	b.Run("ListContainerStats", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{}, func(f *criFleet, _ int) error {
			st, err := f.rt.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{LabelSelector: f.selector()})
			return wantCount("ListContainerStats", len(st), pods, err)
		}))
	})
	b.Run("ListPodSandboxStats", func(b *testing.B) {
		each(b, forCRI(map[string]func(int) error{}, func(f *criFleet, _ int) error {
			st, err := f.rt.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{LabelSelector: f.selector()})
			return wantCount("ListPodSandboxStats", len(st), pods, err)
		}))
	})
}

// rotate calls fn on every fleet, starting with the i-th.
func rotate(fleets []fleet, i int, fn func(fleet)) {
	for k := range fleets {
		fn(fleets[(i+k)%len(fleets)])
	}
}

// reportSeries reports the median of each series as <name>-ms, and
// Berth's overhead over raw Docker and its ratio to containerd where
// both are there.
func reportSeries(b *testing.B, series map[string][]time.Duration) {
	for name, d := range series {
		b.ReportMetric(ms(median(d)), name+"-ms")
	}
	berth := median(series["berth"])
	if d := median(series["docker"]); d > 0 && berth > 0 {
		b.ReportMetric(100*(float64(berth)/float64(d)-1), "overhead-%")
	}
	if c := median(series["containerd"]); c > 0 && berth > 0 {
		b.ReportMetric(float64(berth)/float64(c), "berth/containerd")
	}
}

func wantCount(call string, got, want int, err error) error {
	if err == nil && got != want {
		err = fmt.Errorf("%s returned %d items, want %d", call, got, want)
	}
	return err
}

// podTimes are the latencies of the calls that start a pod.
type podTimes struct{ run, create, start time.Duration }

// benchPod is one pod of a fleet: its sandbox and its one container.
type benchPod struct {
	sandbox, container string
	cfg                *runtimeapi.PodSandboxConfig
	undo               func() // raw Docker only: CNI DEL, remove the pause container
}

// fleet is the pods the benchmark runs on one runtime, and how it makes
// and removes them.
type fleet interface {
	base() *fleetBase
	addSandbox(ctx context.Context, name string, i int) (benchPod, time.Duration, error)
	addContainer(ctx context.Context, p benchPod, name string) (string, podTimes, error)
	removeContainer(ctx context.Context, id string) error
	removePod(ctx context.Context, p benchPod) error
	addPod(ctx context.Context, name string, i int) (benchPod, podTimes, error)
	removeAll(ctx context.Context)
}

// fleetBase is what every fleet has.
type fleetBase struct {
	name   string // berth, containerd or docker
	logs   string // the pods' log directories go under it
	parent string // the pods' cgroup parents go under it
	pods   []benchPod
}

func (f *fleetBase) base() *fleetBase { return f }

func (f *fleetBase) selector() map[string]string { return map[string]string{fleetLabel: f.name} }

// addPod makes a pod with one container on f.
func addPod(ctx context.Context, f fleet, name string, i int) (benchPod, podTimes, error) {
	p, run, err := f.addSandbox(ctx, name, i)
	if err != nil {
		return p, podTimes{run: run}, err
	}
	id, t, err := f.addContainer(ctx, p, "app")
	t.run, p.container = run, id
	if err != nil {
		_ = f.removePod(ctx, p)
	}
	return p, t, err
}

// removeAll removes f's pods, a few at a time.
func removeAll(ctx context.Context, f fleet) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, p := range f.base().pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = f.removePod(ctx, p)
		})
	}
	wg.Wait()
}

// criFleet is the pods the benchmark runs on one CRI runtime.
type criFleet struct {
	fleetBase
	rt internalapi.RuntimeService
}

// fleetPodConfig is a pod's configuration, labelled with its fleet, with a
// log directory and a cgroup parent of its own.
func fleetPodConfig(fleet, logs, parent, name string, i int) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(fleet+"-"+name, i)
	cfg.Labels[fleetLabel] = fleet
	cfg.LogDirectory = filepath.Join(logs, cfg.Metadata.Uid)
	cfg.Linux.CgroupParent = parent + "/" + cfg.Metadata.Uid
	return cfg
}

func fleetContainerConfig(fleet, name string) *runtimeapi.ContainerConfig {
	c := containerConfig(name)
	c.Labels[fleetLabel] = fleet
	return c
}

func (f *criFleet) addSandbox(ctx context.Context, name string, i int) (benchPod, time.Duration, error) {
	cfg := fleetPodConfig(f.name, f.logs, f.parent, name, i)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return benchPod{}, 0, err
	}
	start := time.Now()
	id, err := f.rt.RunPodSandbox(ctx, cfg, "")
	return benchPod{sandbox: id, cfg: cfg}, time.Since(start), err
}

func (f *criFleet) addContainer(ctx context.Context, p benchPod, name string) (string, podTimes, error) {
	var t podTimes
	start := time.Now()
	id, err := f.rt.CreateContainer(ctx, p.sandbox, fleetContainerConfig(f.name, name), p.cfg)
	t.create = time.Since(start)
	if err != nil {
		return "", t, err
	}
	start = time.Now()
	err = f.rt.StartContainer(ctx, id)
	t.start = time.Since(start)
	return id, t, err
}

func (f *criFleet) addPod(ctx context.Context, name string, i int) (benchPod, podTimes, error) {
	return addPod(ctx, f, name, i)
}

func (f *criFleet) removeContainer(ctx context.Context, id string) error {
	if err := f.rt.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	return f.rt.RemoveContainer(ctx, id)
}

func (f *criFleet) removePod(ctx context.Context, p benchPod) error {
	if err := f.rt.StopPodSandbox(ctx, p.sandbox); err != nil {
		return err
	}
	return f.rt.RemovePodSandbox(ctx, p.sandbox)
}

func (f *criFleet) removeAll(ctx context.Context) { removeAll(ctx, f) }

// rawFleet is the same pods made directly on the Docker API and libcni.
type rawFleet struct {
	fleetBase
	dc   *client.Client
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func (r *rawFleet) addSandbox(ctx context.Context, name string, i int) (benchPod, time.Duration, error) {
	cfg := fleetPodConfig("docker", r.logs, r.parent, name, i)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return benchPod{}, 0, err
	}
	start := time.Now()
	id, undo, err := rawSandbox(ctx, r.dc, r.cni, r.list, cfg)
	return benchPod{sandbox: id, cfg: cfg, undo: undo}, time.Since(start), err
}

func (r *rawFleet) addContainer(ctx context.Context, p benchPod, name string) (string, podTimes, error) {
	var t podTimes
	sb := &store.Sandbox{ID: p.sandbox, Metadata: p.cfg.Metadata, Namespaces: &runtimeapi.NamespaceOption{}, LogDirectory: p.cfg.LogDirectory, CgroupParent: p.cfg.Linux.CgroupParent}
	spec, err := dockerspec.ContainerSpec(sb, fleetContainerConfig("docker", name), dockerspec.ContainerOptions{APIVersion: "1.41", LogMaxSize: "50m", LogMaxFile: "2"})
	if err != nil {
		return "", t, err
	}
	spec.Name = "raw_" + spec.Name
	unlabel(spec)
	start := time.Now()
	res, err := r.dc.ContainerCreate(ctx, client.ContainerCreateOptions{Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig})
	t.create = time.Since(start)
	if err != nil {
		return "", t, err
	}
	start = time.Now()
	_, err = r.dc.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
	t.start = time.Since(start)
	return res.ID, t, err
}

func (r *rawFleet) addPod(ctx context.Context, name string, i int) (benchPod, podTimes, error) {
	return addPod(ctx, r, name, i)
}

func (r *rawFleet) removeContainer(ctx context.Context, id string) error {
	_, err := r.dc.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	return err
}

func (r *rawFleet) removePod(ctx context.Context, p benchPod) error {
	var err error
	if p.container != "" {
		err = r.removeContainer(ctx, p.container)
	}
	if p.undo != nil {
		p.undo()
	}
	return err
}

func (r *rawFleet) removeAll(ctx context.Context) { removeAll(ctx, r) }

// listKind is Docker's label-filtered list of the fleet's pause containers
// (kind "podsandbox") or app containers ("container").
func (r *rawFleet) listKind(ctx context.Context, kind string, want int) error {
	res, err := r.dc.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", rawTypeLabel+"="+kind, fleetLabel+"=docker")})
	if err != nil {
		return err
	}
	if len(res.Items) != want {
		var names []string
		for _, c := range res.Items {
			names = append(names, strings.Join(c.Names, ","))
		}
		return fmt.Errorf("docker ps: %d %s containers, want %d: %v", len(res.Items), kind, want, names)
	}
	return nil
}
