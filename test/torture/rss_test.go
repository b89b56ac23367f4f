package torture

import (
	"fmt"
	"sync"
	"testing"
)

// TestMemoryFlatOverPodCycles runs pod create/delete cycles (each pod with
// a container, started, whose log Berth forwards) and compares the berth's
// memory after a warm-up with its memory at the end: the heap in use after
// a garbage collection must stay within 20% + 2 MiB, the RSS within 25% +
// 8 MiB (users of cri-dockerd report it growing here without bound). The
// berth is built without the race detector, whose shadow memory would
// drown the figures.
func TestMemoryFlatOverPodCycles(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{NoRace: true})
	cycles := func(from, to int) {
		work := make(chan int)
		var wg sync.WaitGroup
		for range scale.CycleWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					_ = n.cycle(r, fmt.Sprintf("cycle-%d", i))
				}
			}()
		}
		for i := from; i < to; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	measure := func() (rss, heap int64) {
		n.settle(t, nil)
		heap, err := n.b.HeapInuse()
		if err != nil {
			t.Fatal(err)
		}
		rss, err = n.b.RSS()
		if err != nil {
			t.Fatal(err)
		}
		return rss, heap
	}
	cycles(0, scale.WarmupCycles)
	rss0, heap0 := measure()
	cycles(scale.WarmupCycles, scale.Cycles)
	rss1, heap1 := measure()
	const mib = 1 << 20
	r.Note("%d cycles: RSS %.1f→%.1f MiB, heap in use %.1f→%.1f MiB (after %d warm-up cycles)",
		scale.Cycles, float64(rss0)/mib, float64(rss1)/mib, float64(heap0)/mib, float64(heap1)/mib, scale.WarmupCycles)
	r.Check(heap1 <= heap0+heap0/5+2*mib, "heap in use grew from %d to %d bytes over %d cycles", heap0, heap1, scale.Cycles-scale.WarmupCycles)
	r.Check(rss1 <= rss0+rss0/4+8*mib, "RSS grew from %d to %d bytes over %d cycles", rss0, rss1, scale.Cycles-scale.WarmupCycles)
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}
