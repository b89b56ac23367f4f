package stats

import (
	"context"
	"testing"
	"time"
)

// fakeCgroups serve CPU usage per key (the Cgroup's Paths[""]).
type fakeCgroups map[string]uint64

func (f fakeCgroups) read(c Cgroup, _ Fields) (CgroupStats, error) {
	v, ok := f[c.Paths[""]]
	if !ok {
		return CgroupStats{}, errGone
	}
	return CgroupStats{HasCPU: true, CPU: CPUStats{UsageNs: v}, PSI: PSIStats{CPU: &Pressure{Some: PressureData{TotalUs: v / 1000}}}}, nil
}

var errGone = &gone{}

type gone struct{}

func (*gone) Error() string { return "gone" }

func target(key string) Target {
	return Target{Key: key, Cgroup: Cgroup{Paths: map[string]string{"": key}}}
}

func TestSamplerNanoCores(t *testing.T) {
	now := time.Unix(1000, 0)
	cg := fakeCgroups{"a": 0, "b": 0}
	keys := []string{"a", "b"}
	s := &Sampler{
		Targets: func() []Target {
			var out []Target
			for _, k := range keys {
				out = append(out, target(k))
			}
			return out
		},
		now:  func() time.Time { return now },
		read: cg.read,
	}
	s.SampleOnce()
	if _, ok := s.NanoCores("a", now.Add(time.Second), 1e9); ok {
		t.Errorf("a rate over a window shorter than MinWindow")
	}
	// a: one core busy for 5s; b: a quarter of a core.
	now = now.Add(5 * time.Second)
	cg["a"], cg["b"] = 5e9, 1.25e9
	s.SampleOnce()

	// A fresh read 1s after the last pass: the window reaches back to the
	// pass before (6s), the rate includes the fresh second.
	got, ok := s.NanoCores("a", now.Add(time.Second), 6e9)
	if !ok || got != 1e9 {
		t.Errorf("a = %d, %v; want 1e9 nanocores", got, ok)
	}
	// 3s after the last pass, the last pass alone is old enough.
	got, ok = s.NanoCores("b", now.Add(3*time.Second), 1.25e9+0.75e9)
	if !ok || got != 0.25e9 {
		t.Errorf("b = %d, %v; want 0.25e9", got, ok)
	}
	// A counter that went back is a new cgroup: no rate.
	if _, ok := s.NanoCores("a", now.Add(3*time.Second), 1); ok {
		t.Errorf("a rate from a counter that went back")
	}
	if psi, _, ok := s.PSI("a"); !ok || psi.CPU.Some.TotalUs != 5e6 {
		t.Errorf("PSI(a) = %+v, %v", psi, ok)
	}

	// b goes away: forgotten. a restarts: its old points are dropped.
	keys = []string{"a"}
	now = now.Add(5 * time.Second)
	cg["a"] = 1e6
	s.SampleOnce()
	if _, ok := s.NanoCores("b", now.Add(3*time.Second), 5e9); ok {
		t.Errorf("b still sampled after it went away")
	}
	if _, ok := s.NanoCores("a", now.Add(time.Second), 2e6); ok {
		t.Errorf("a rate across a counter reset")
	}
	if _, ok := s.NanoCores("unknown", now, 1); ok {
		t.Errorf("a rate for an unknown key")
	}
}

func TestSamplerSkipsVanishedCgroups(t *testing.T) {
	s := &Sampler{Targets: func() []Target { return []Target{target("gone")} }, read: fakeCgroups{}.read}
	s.SampleOnce()
	if _, _, ok := s.PSI("gone"); ok {
		t.Errorf("a cgroup that could not be read has a sample")
	}
}

func TestSamplerGoesOnAfterAPanic(t *testing.T) {
	rounds := make(chan int, 10)
	n := 0
	s := &Sampler{Interval: time.Millisecond, read: fakeCgroups{"a": 1000}.read, Targets: func() []Target {
		n++
		rounds <- n
		if n == 1 {
			panic("boom")
		}
		return []Target{target("a")}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	<-rounds // the round that panicked
	<-rounds // the next one
	<-rounds // …which finished: a is sampled
	if _, _, ok := s.PSI("a"); !ok {
		t.Error("the round after the panic sampled nothing")
	}
	cancel()
	<-done
}
