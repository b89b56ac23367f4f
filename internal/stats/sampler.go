package stats

import (
	"context"
	"sync"
	"time"

	"github.com/berth-cri/berth/internal/panics"
)

// Sampler defaults.
const (
	// DefaultSampleInterval is how often the sampler reads every cgroup's
	// cumulative CPU usage (and PSI): one small file read per cgroup and
	// resource, so 200 pods cost a few milliseconds per pass.
	DefaultSampleInterval = 5 * time.Second
	// DefaultMinWindow is the shortest window a CPU rate is computed over:
	// shorter windows are dominated by scheduling noise.
	DefaultMinWindow = 2 * time.Second
)

// Target is one cgroup the sampler watches, under a caller-chosen key (a
// container id, a pod's).
type Target struct {
	Key    string
	Cgroup Cgroup
}

// Sampler reads the cumulative CPU usage (and PSI) of a set of cgroups in
// the background, so that a stats call can report a CPU rate
// (usage_nano_cores) from one fresh read instead of sleeping between two.
type Sampler struct {
	// Targets lists the cgroups to sample now; it is called once a pass.
	Targets func() []Target
	// Interval is the time between passes (DefaultSampleInterval if zero).
	Interval time.Duration
	// MinWindow is the shortest rate window (DefaultMinWindow if zero).
	MinWindow time.Duration

	// now and read are replaced in tests.
	now  func() time.Time
	read func(Cgroup, Fields) (CgroupStats, error)

	mu      sync.Mutex // guards entries
	entries map[string]*sampleEntry
}

type cpuPoint struct {
	at    time.Time
	usage uint64
}

type sampleEntry struct {
	// points are the last two CPU readings, oldest first.
	points []cpuPoint
	psi    PSIStats
	psiAt  time.Time
}

// NewSampler returns a sampler of the cgroups targets lists.
func NewSampler(targets func() []Target) *Sampler {
	return &Sampler{Targets: targets}
}

func (s *Sampler) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Sampler) minWindow() time.Duration {
	if s.MinWindow > 0 {
		return s.MinWindow
	}
	return DefaultMinWindow
}

// Run samples every Interval until ctx ends. A panic in a round is logged
// and counted (internal/panics), and the next round runs as usual.
func (s *Sampler) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultSampleInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = panics.Call(ctx, panics.StatsSampler, func() error { s.SampleOnce(); return nil })
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleOnce reads every target once and forgets targets no longer listed.
func (s *Sampler) SampleOnce() {
	read := s.read
	if read == nil {
		read = ReadCgroup
	}
	targets := s.Targets()
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		seen[t.Key] = true
		st, err := read(t.Cgroup, FieldCPU|FieldPSI)
		if err != nil {
			// The container exited between the list and the read.
			continue
		}
		s.observe(t.Key, s.clock(), st)
	}
	s.mu.Lock()
	for k := range s.entries {
		if !seen[k] {
			delete(s.entries, k)
		}
	}
	s.mu.Unlock()
}

func (s *Sampler) observe(key string, at time.Time, st CgroupStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]*sampleEntry{}
	}
	e := s.entries[key]
	if e == nil {
		e = &sampleEntry{}
		s.entries[key] = e
	}
	if st.HasCPU {
		p := cpuPoint{at: at, usage: st.CPU.UsageNs}
		if n := len(e.points); n > 0 && p.usage < e.points[n-1].usage {
			e.points = e.points[:0] // the counter restarted (a new cgroup)
		}
		e.points = append(e.points, p)
		if len(e.points) > 2 {
			e.points = e.points[len(e.points)-2:]
		}
	}
	e.psi, e.psiAt = st.PSI, at
}

// NanoCores returns the CPU rate of key, in nanocores (1e9 = one core
// busy), over the window from the newest sample at least MinWindow before
// at up to a fresh reading (at, usageNs). It returns false when there is
// no such sample yet (a container that just started) or the counter went
// back (a new cgroup under the same key).
func (s *Sampler) NanoCores(key string, at time.Time, usageNs uint64) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		return 0, false
	}
	for i := len(e.points) - 1; i >= 0; i-- {
		p := e.points[i]
		window := at.Sub(p.at)
		if window < s.minWindow() {
			continue
		}
		if usageNs < p.usage {
			return 0, false
		}
		return uint64(float64(usageNs-p.usage) / window.Seconds()), true
	}
	return 0, false
}

// PSI returns the pressure figures of key from the last pass, and when
// they were read.
func (s *Sampler) PSI(key string) (PSIStats, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil || e.psiAt.IsZero() {
		return PSIStats{}, time.Time{}, false
	}
	return e.psi, e.psiAt, true
}
