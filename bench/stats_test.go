package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

var (
	statsPoll  = flag.Duration("stats.poll", 20*time.Second, "how long each polling phase of BenchmarkStats lasts (the issue's figure is a minute)")
	statsSizes = flag.String("stats.sizes", "10,100,200", "running-container counts BenchmarkStats measures at")
)

// BenchmarkStats measures what kubelet's stats polling costs at 10, 100
// and 200 running containers (one per pod, each pod with its own cgroup
// parent, as kubelet makes them), on a private Docker daemon so that
// dockerd's CPU is this workload's alone:
//
//   - the latency of ListContainerStats and ListPodSandboxStats, against
//     fetching the same data the cri-dockerd way: Docker's one-shot stats
//     for every container (and, for pods, every pause container too);
//   - Berth's, dockerd's and containerd's (with its shims) CPU while a
//     client makes both calls every second, against the same client
//     fetching the one-shot stats every second.
//
// Creating 200 pods takes minutes on a 2-core machine; this benchmark is
// not part of `make test`. Run it once per figure:
//
//	go test -run '^$' -bench Stats -benchtime 1x -timeout 90m ./bench/ -args -stats.poll 60s
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	var sizes []int
	for _, s := range strings.Split(*statsSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			b.Fatalf("-stats.sizes: %q", s)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)

	d := framework.StartDockerd(b, "")
	loadImage(b, d.Host, framework.TestImage)
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--docker-endpoint", d.Host, "--log-level", "warn")})
	dc, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	procs := daemonProcs{dir: d.Dir}

	parent := "/berth-bench-" + framework.UniqueName("s")[2:]
	f := &statsFleet{br: br, parent: parent}
	b.Cleanup(func() {
		start := time.Now()
		f.removeAll(ctx)
		removeCgroupTree(parent)
		b.Logf("removed %d pods in %v", len(f.pods), time.Since(start).Round(time.Second))
	})

	for _, size := range sizes {
		start := time.Now()
		if err := f.grow(ctx, size); err != nil {
			b.Fatal(err)
		}
		b.Logf("%d running containers (and pause containers) after %v", size, time.Since(start).Round(time.Second))
		b.Run(fmt.Sprintf("containers=%d", size), func(b *testing.B) {
			for b.Loop() {
				r := measureStats(b, ctx, br, dc, f, procs)
				r.report(b)
				b.Logf("%s", r)
			}
		})
	}
}

// statsResult is one size's figures.
type statsResult struct {
	containers int
	// Median latencies.
	berthContainers, berthPods   time.Duration
	dockerContainers, dockerPods time.Duration
	// CPU in percent of one core, while polling.
	berthPoll, berthDockerd, berthContainerd float64
	dockerPoll, dockerContainerd             float64
	idleDockerd, idleContainerd              float64
	poll                                     time.Duration
	dockerRounds                             int
}

func (r statsResult) report(b *testing.B) {
	b.ReportMetric(ms(r.berthContainers), "ListContainerStats-ms")
	b.ReportMetric(ms(r.dockerContainers), "docker-stats-ms")
	b.ReportMetric(ms(r.berthPods), "ListPodSandboxStats-ms")
	b.ReportMetric(ms(r.dockerPods), "docker-pod-stats-ms")
	b.ReportMetric(r.berthPoll, "berth-cpu-%")
	b.ReportMetric(r.berthDockerd, "dockerd-cpu-%-berth")
	b.ReportMetric(r.dockerPoll, "dockerd-cpu-%-docker")
	b.ReportMetric(r.dockerContainerd, "containerd-cpu-%-docker")
}

func (r statsResult) String() string {
	return fmt.Sprintf("| %d | %.1f ms | %.0f ms | %.1f ms | %.0f ms | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %d |",
		r.containers, ms(r.berthContainers), ms(r.dockerContainers), ms(r.berthPods), ms(r.dockerPods),
		r.berthPoll, r.berthDockerd, r.berthContainerd, r.dockerPoll, r.dockerContainerd, r.idleDockerd, r.idleContainerd, r.dockerRounds)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func measureStats(b *testing.B, ctx context.Context, br *framework.Berth, dc *client.Client, f *statsFleet, procs daemonProcs) statsResult {
	r := statsResult{containers: len(f.pods), poll: *statsPoll}
	berthPid := br.Pid()
	listContainers := func() error {
		st, err := br.Runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
		if err == nil && len(st) != len(f.pods) {
			err = fmt.Errorf("ListContainerStats returned %d containers, want %d", len(st), len(f.pods))
		}
		return err
	}
	listPods := func() error {
		st, err := br.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{})
		if err == nil && len(st) != len(f.pods) {
			err = fmt.Errorf("ListPodSandboxStats returned %d pods, want %d", len(st), len(f.pods))
		}
		return err
	}
	// The cri-dockerd way: one-shot stats per container, all at once
	// (cri-dockerd's ListContainerStats starts a goroutine per container).
	dockerStats := func(ids []string) error {
		errs := make(chan error, len(ids))
		for _, id := range ids {
			go func(id string) {
				res, err := dc.ContainerStats(ctx, id, client.ContainerStatsOptions{})
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				errs <- err
			}(id)
		}
		var first error
		for range ids {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	apps, all := f.ids()

	// Warm up: Berth finds every cgroup once; the sampler and the layer
	// sampler take their first passes.
	for i := 0; i < 3; i++ {
		if err := listPods(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
	}

	// Idle: what the fleet costs dockerd and containerd with nobody
	// asking (the mean of a window before and one after Berth's polling).
	idle := sampleCPU([]int{procs.dockerd(b)}, procs.others)
	time.Sleep(10 * time.Second)
	got := idle.stop()
	r.idleDockerd, r.idleContainerd = got[0], got[1]

	r.berthContainers = medianOf(b, 20, listContainers)
	r.berthPods = medianOf(b, 20, listPods)
	r.dockerContainers = medianOf(b, 3, func() error { return dockerStats(apps) })
	r.dockerPods = medianOf(b, 3, func() error { return dockerStats(all) })

	// Berth polled every second, as kubelet's housekeeping does (more
	// often, in fact).
	cpu := sampleCPU([]int{berthPid, procs.dockerd(b)}, procs.others)
	poll(b, *statsPoll, func() error {
		if err := listContainers(); err != nil {
			return err
		}
		return listPods()
	})
	got = cpu.stop()
	r.berthPoll, r.berthDockerd, r.berthContainerd = got[0], got[1], got[2]

	// Idle again: the fleet's own cost drifts (shims settle after start).
	idle = sampleCPU([]int{procs.dockerd(b)}, procs.others)
	time.Sleep(10 * time.Second)
	got = idle.stop()
	r.idleDockerd, r.idleContainerd = (r.idleDockerd+got[0])/2, (r.idleContainerd+got[1])/2

	// The same, the cri-dockerd way.
	cpu = sampleCPU([]int{procs.dockerd(b)}, procs.others)
	r.dockerRounds = poll(b, *statsPoll, func() error { return dockerStats(all) })
	got = cpu.stop()
	r.dockerPoll, r.dockerContainerd = got[0], got[1]
	return r
}

// poll calls fn once a second (or back to back when it takes longer) for
// d, and returns how many times it ran.
func poll(b *testing.B, d time.Duration, fn func() error) int {
	deadline := time.Now().Add(d)
	n := 0
	for time.Now().Before(deadline) {
		next := time.Now().Add(time.Second)
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		n++
		time.Sleep(time.Until(next))
	}
	return n
}

func medianOf(b *testing.B, n int, fn func() error) time.Duration {
	var d []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	return median(d)
}

// cpuSample measures processes' CPU time over an interval.
type cpuSample struct {
	pids   []int
	others func() []int // a group measured together (re-listed at the end)
	start  time.Time
	begin  []float64
	beginO map[int]float64
}

func sampleCPU(pids []int, others func() []int) *cpuSample {
	s := &cpuSample{pids: pids, others: others, start: time.Now(), beginO: map[int]float64{}}
	for _, p := range pids {
		s.begin = append(s.begin, cpuSeconds(p))
	}
	if others != nil {
		for _, p := range others() {
			s.beginO[p] = cpuSeconds(p)
		}
	}
	return s
}

// stop returns each pid's CPU use since the start in percent of one core,
// then the group's.
func (s *cpuSample) stop() []float64 {
	wall := time.Since(s.start).Seconds()
	var out []float64
	for i, p := range s.pids {
		out = append(out, 100*(cpuSeconds(p)-s.begin[i])/wall)
	}
	if s.others != nil {
		var used float64
		for _, p := range s.others() {
			used += cpuSeconds(p) - s.beginO[p] // a new process starts at 0
		}
		out = append(out, 100*used/wall)
	}
	return out
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces) in parens.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// daemonProcs finds a private daemon's processes by its directory.
type daemonProcs struct{ dir string }

func (p daemonProcs) dockerd(b *testing.B) int {
	data, err := os.ReadFile(filepath.Join(p.dir, "d.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		b.Fatalf("private dockerd pid: %q %v", data, err)
	}
	return pid
}

// others are containerd and the shims of the daemon (their command lines
// name its directory).
func (p daemonProcs) others() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmd, []byte(p.dir)) {
			continue
		}
		if bytes.HasPrefix(cmd, []byte(framework.DockerdBinary())) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// statsFleet is the pods the benchmark runs: one busybox container each.
type statsFleet struct {
	br     *framework.Berth
	parent string
	mu     sync.Mutex
	pods   []fleetPod
}

type fleetPod struct{ sandbox, container string }

func (f *statsFleet) ids() (apps, all []string) {
	for _, p := range f.pods {
		apps = append(apps, p.container)
		all = append(all, p.container, p.sandbox)
	}
	return apps, all
}

// grow adds pods until there are size, a few at a time.
func (f *statsFleet) grow(ctx context.Context, size int) error {
	sem := make(chan struct{}, 4)
	errs := make(chan error, size)
	var wg sync.WaitGroup
	for i := len(f.pods); i < size; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- f.add(ctx, i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *statsFleet) add(ctx context.Context, i int) error {
	cfg := podConfig("stats", i)
	cfg.Linux.CgroupParent = fmt.Sprintf("%s/pod%d", f.parent, i)
	cfg.LogDirectory = filepath.Join(os.TempDir(), "berth-bench-logs", cfg.Metadata.Uid)
	sb, err := f.br.Runtime.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.pods = append(f.pods, fleetPod{sandbox: sb})
	idx := len(f.pods) - 1
	f.mu.Unlock()
	ctr := containerConfig("app")
	id, err := f.br.Runtime.CreateContainer(ctx, sb, ctr, cfg)
	if err == nil {
		err = f.br.Runtime.StartContainer(ctx, id)
	}
	f.mu.Lock()
	f.pods[idx].container = id
	f.mu.Unlock()
	return err
}

func (f *statsFleet) removeAll(ctx context.Context) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, p := range f.pods {
		wg.Add(1)
		sem <- struct{}{}
		go func(p fleetPod) {
			defer wg.Done()
			defer func() { <-sem }()
			if p.container != "" {
				_ = f.br.Runtime.StopContainer(ctx, p.container, 0)
				_ = f.br.Runtime.RemoveContainer(ctx, p.container)
			}
			_ = f.br.Runtime.StopPodSandbox(ctx, p.sandbox)
			_ = f.br.Runtime.RemovePodSandbox(ctx, p.sandbox)
		}(p)
	}
	wg.Wait()
	_ = os.RemoveAll(filepath.Join(os.TempDir(), "berth-bench-logs"))
}

// removeCgroupTree removes an (empty) cgroup and its children from every
// hierarchy.
func removeCgroupTree(parent string) {
	roots, _ := filepath.Glob(filepath.Join(cgroups.Root, "*"))
	roots = append(roots, cgroups.Root)
	for _, r := range roots {
		top := filepath.Join(r, parent)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// loadImage copies an image from the suite's Docker into the Docker at
// host.
func loadImage(b *testing.B, host, ref string) {
	save := exec.Command("docker", "save", ref)
	save.Env = append(save.Environ(), "DOCKER_HOST="+framework.DockerHost())
	load := exec.Command("docker", "load", "-q")
	load.Env = append(load.Environ(), "DOCKER_HOST="+host)
	pipe, err := save.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	load.Stdin = pipe
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := save.Start(); err != nil {
		b.Fatal(err)
	}
	if err := load.Run(); err != nil {
		b.Fatalf("docker load: %v: %s", err, out.String())
	}
	if err := save.Wait(); err != nil {
		b.Fatalf("docker save: %v", err)
	}
}
