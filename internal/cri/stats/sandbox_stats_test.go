package stats

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
	kernelstats "github.com/berth-cri/berth/internal/stats"
)

func TestNetworkUsageDefaultInterface(t *testing.T) {
	n := networkUsage(1, []kernelstats.Interface{{Name: "net1", RxBytes: 1}, {Name: "eth0", TxBytes: 2, TxErrors: 3}})
	if n.DefaultInterface.Name != "eth0" || n.DefaultInterface.TxBytes.Value != 2 || n.DefaultInterface.TxErrors.Value != 3 {
		t.Errorf("default interface %v", n.DefaultInterface)
	}
	// Every interface, the default one too, as kubelet's Summary API has them.
	if len(n.Interfaces) != 2 || n.Interfaces[0].Name != "net1" || n.Interfaces[0].RxBytes.Value != 1 || n.Interfaces[1] != n.DefaultInterface {
		t.Errorf("interfaces %v", n.Interfaces)
	}
	if n := networkUsage(1, []kernelstats.Interface{{Name: "ens3"}}); n.DefaultInterface.Name != "ens3" || len(n.Interfaces) != 1 {
		t.Errorf("without eth0: %v", n)
	}
	if networkUsage(1, nil) != nil {
		t.Errorf("no interfaces gave usage")
	}
}

func TestSumUsage(t *testing.T) {
	v := func(x uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: x} }
	a := cgroupUsage{
		cpu:    &runtimeapi.CpuUsage{UsageCoreNanoSeconds: v(10), UsageNanoCores: v(1)},
		memory: &runtimeapi.MemoryUsage{WorkingSetBytes: v(100), UsageBytes: v(200)},
		pids:   &runtimeapi.ProcessUsage{ProcessCount: v(2)},
	}
	b := cgroupUsage{cpu: &runtimeapi.CpuUsage{UsageCoreNanoSeconds: v(5), UsageNanoCores: v(2)}, memory: &runtimeapi.MemoryUsage{WorkingSetBytes: v(1)}}
	s := sumUsage([]cgroupUsage{a, b})
	if s.cpu.UsageCoreNanoSeconds.Value != 15 || s.cpu.UsageNanoCores.Value != 3 || s.memory.WorkingSetBytes.Value != 101 ||
		s.memory.UsageBytes.Value != 200 || s.pids.ProcessCount.Value != 2 {
		t.Errorf("sum = %v %v %v", s.cpu, s.memory, s.pids)
	}
	// One part without a rate: no rate for the sum.
	b.cpu.UsageNanoCores = nil
	if s := sumUsage([]cgroupUsage{a, b}); s.cpu.UsageNanoCores != nil {
		t.Errorf("sum has a rate %v though a part has none", s.cpu.UsageNanoCores)
	}
}

func TestSpecOf(t *testing.T) {
	sp := specOf(&runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: -1, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: 2 << 20})
	if *sp != (kernelstats.Spec{CPUShares: 512, CPUPeriod: 100000, MemoryLimit: 1 << 20, SwapLimit: 2 << 20}) {
		t.Errorf("specOf = %+v", sp)
	}
	if specOf(nil) != nil {
		t.Error("specOf(nil) != nil")
	}
}

func TestForEachVisitsEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 200, 1000} {
		seen := make([]int32, n)
		forEach(context.Background(), n, func(i int) { atomic.AddInt32(&seen[i], 1) })
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, c)
			}
		}
	}
}

func TestForEachRaisesAWorkersPanicInTheCaller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // several workers
	var got any
	func() {
		defer func() { got = recover() }()
		forEach(context.Background(), 200, func(i int) {
			if i == 150 {
				panic("boom")
			}
		})
	}()
	perr, ok := got.(*panics.Error)
	if !ok || perr.Where != panics.StatsWorker || !errors.Is(perr, errdefs.ErrInternal) {
		t.Fatalf("the caller saw %#v, want the worker's panic as a *panics.Error", got)
	}
	// And the interceptor's handling of it is the worker's error itself.
	if err := panics.Handle(context.Background(), panics.RPC, got); err != perr {
		t.Errorf("Handle = %v", err)
	}
}
