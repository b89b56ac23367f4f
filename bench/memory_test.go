package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/berth-cri/berth/test/framework"
)

var (
	memoryPods   = flag.Int("memory.pods", 200, "how many pods BenchmarkMemoryAtScale keeps running on each runtime (at most 250: a /24 each)")
	memoryCycles = flag.Int("memory.cycles", 1000, "how many pods BenchmarkMemoryAtScale then starts and removes on each runtime, one at a time")
)

// BenchmarkMemoryAtScale is the memory a runtime takes for a node's pods:
// -memory.pods pods (one container each) kept running on Berth and, when
// BERTH_BENCH_CONTAINERD_ENDPOINT names its socket, on containerd 2.x, then
// -memory.cycles pods more started and removed one at a time on each
// (interleaved, a pod on one and then on the other). It reports each
// runtime's RSS before any pod (-idle), with all pods running (-pods) and
// after the cycles (-cycled), Berth's Go heap in use at the same points,
// and the memory of the whole stack: Berth, dockerd, Docker's containerd
// and their shims, against containerd and its shims (the pods' own
// processes are in neither), as PSS summed over the processes (each is
// charged its share of the pages they share, such as the shims' text).
//
//	eval "$(hack/setup-containerd.sh env)"
//	go test -run '^$' -bench '^BenchmarkMemoryAtScale$' -benchtime 1x -timeout 120m ./bench/
func BenchmarkMemoryAtScale(b *testing.B) {
	ctx := context.Background()
	d := framework.StartDockerd(b, "")
	loadImage(b, d.Host, framework.TestImage)
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--docker-endpoint", d.Host, "--log-level", "info",
		"--metrics-address", "127.0.0.1:0")})
	parent := "/berth-bench-" + framework.UniqueName("mem")[4:]
	b.Cleanup(func() { removeCgroupTree(parent) })
	logs := b.TempDir()

	type runtime struct {
		f     *criFleet
		own   framework.ProcSet // the runtime's own process(es)
		stack framework.ProcSet // with the engine below it and the shims
		heap  func() float64    // MiB of Go heap in use; nil when unknown
	}
	berth := runtime{
		f:     &criFleet{fleetBase: fleetBase{name: "berth", logs: logs, parent: parent}, rt: br.Runtime},
		own:   framework.ProcSet{Roots: []int{br.Pid()}},
		stack: d.StackProcs(br.Pid()),
		heap:  func() float64 { return berthHeapMiB(b, br) },
	}
	runtimes := []runtime{berth}
	if ep := os.Getenv(containerdEndpointEnv); ep != "" {
		own, stack, err := framework.ContainerdProcs(ep)
		if err != nil {
			b.Fatal(err)
		}
		runtimes = append(runtimes, runtime{
			f:     &criFleet{fleetBase: fleetBase{name: "containerd", logs: logs, parent: parent}, rt: framework.ConnectCRI(b, ep)},
			own:   own,
			stack: stack,
		})
	} else {
		b.Logf("%s is not set: no containerd figures (eval \"$(hack/setup-containerd.sh env)\")", containerdEndpointEnv)
	}
	b.Cleanup(func() {
		for _, r := range runtimes {
			r.f.removeAll(context.Background())
		}
	})

	measure := func(point string) {
		for _, r := range runtimes {
			own, stack := r.own.Memory(), r.stack.Memory()
			b.ReportMetric(own.RSSMiB, r.f.name+"-rss-MiB-"+point)
			b.ReportMetric(stack.PSSMiB, r.f.name+"-stack-pss-MiB-"+point)
			line := fmt.Sprintf("%s %s: RSS %.1f MiB; with the engine and shims PSS %.1f MiB (RSS %.1f) in %d processes",
				r.f.name, point, own.RSSMiB, stack.PSSMiB, stack.RSSMiB, stack.Procs)
			if r.heap != nil {
				heap := r.heap()
				b.ReportMetric(heap, r.f.name+"-heap-MiB-"+point)
				line += fmt.Sprintf("; Go heap in use %.1f MiB", heap)
			}
			b.Log(line)
		}
	}
	for range b.N {
		measure("idle")
		for i := range *memoryPods {
			for _, r := range runtimes {
				p, _, err := r.f.addPod(ctx, "keep", i)
				if err != nil {
					b.Fatalf("%s: pod %d: %v", r.f.name, i, err)
				}
				r.f.pods = append(r.f.pods, p)
			}
		}
		// Let the pods' start-up work settle (events, the first stats).
		time.Sleep(10 * time.Second)
		measure("pods")
		start := time.Now()
		for i := range *memoryCycles {
			for _, r := range runtimes {
				p, _, err := r.f.addPod(ctx, "cycle", i)
				if err != nil {
					b.Fatalf("%s: cycle %d: %v", r.f.name, i, err)
				}
				if err := r.f.removePod(ctx, p); err != nil {
					b.Fatalf("%s: cycle %d: removing the pod: %v", r.f.name, i, err)
				}
			}
			if (i+1)%100 == 0 {
				b.Logf("%d cycles in %s", i+1, time.Since(start).Round(time.Second))
			}
		}
		time.Sleep(10 * time.Second)
		measure("cycled")
	}
}

// berthHeapMiB is Berth's go_memstats_heap_inuse_bytes, in MiB.
func berthHeapMiB(b *testing.B, br *framework.Berth) float64 {
	b.Helper()
	f := berthMetrics(b, br)["go_memstats_heap_inuse_bytes"]
	if f == nil || len(f.GetMetric()) == 0 {
		b.Fatal("berth's metrics have no go_memstats_heap_inuse_bytes")
	}
	return f.GetMetric()[0].GetGauge().GetValue() / (1 << 20)
}
