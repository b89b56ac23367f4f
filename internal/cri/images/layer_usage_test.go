package images

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/stats"
)

// fakeLayers is a Docker with containers whose layers are directories
// ("dir-<id>"), or have none (Docker measures them).
type fakeLayers struct {
	mu         sync.Mutex
	containers []docker.LayerContainer
	noDir      map[string]bool
	sizes      map[string]int64
	inspects   int
	sizeCalls  int
	lists      int
}

func (f *fakeLayers) ListLayerContainers(context.Context) ([]docker.LayerContainer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return append([]docker.LayerContainer(nil), f.containers...), nil
}

func (f *fakeLayers) WritableLayerDir(_ context.Context, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inspects++
	if f.noDir[id] {
		return "", nil
	}
	return "dir-" + id, nil
}

func (f *fakeLayers) WritableLayerSize(_ context.Context, id string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sizeCalls++
	return f.sizes[id], nil
}

type fakeWalker struct {
	mu    sync.Mutex
	usage map[string]stats.DirUsage
	walks map[string]int
}

func (w *fakeWalker) walk(_ context.Context, dir string) (stats.DirUsage, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.walks[dir]++
	u, ok := w.usage[dir]
	if !ok {
		return stats.DirUsage{}, errdefs.NotFound("dir", dir)
	}
	return u, nil
}

func (w *fakeWalker) count(dir string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.walks[dir]
}

func TestLayerUsageMeasuresOnlyWhatMayHaveChanged(t *testing.T) {
	src := &fakeLayers{
		containers: []docker.LayerContainer{{ID: "run", Running: true}, {ID: "stopped"}, {ID: "snap"}},
		noDir:      map[string]bool{"snap": true},
		sizes:      map[string]int64{"snap": 7},
	}
	w := &fakeWalker{walks: map[string]int{}, usage: map[string]stats.DirUsage{
		"dir-run":     {Bytes: 100, Inodes: 3},
		"dir-stopped": {Bytes: 20, Inodes: 2},
		"dir-new":     {Bytes: 5, Inodes: 1},
	}}
	clock := time.Unix(1000, 0)
	l := NewLayerSampler(src)
	l.walk = w.walk
	l.now = func() time.Time { return clock }
	ctx := context.Background()

	s, err := l.Usage(ctx) // the first call waits for a sample
	if err != nil {
		t.Fatal(err)
	}
	if s.bytes != 127 || s.inodes != 5 || s.inodesKnown || !s.at.Equal(clock) {
		t.Fatalf("first sample = %+v", s)
	}

	// A fresh sample is returned as is: no Docker call, no walk.
	s2, _ := l.Usage(ctx)
	if s2 != s || w.count("dir-run") != 1 {
		t.Fatalf("fresh sample re-measured: %+v, walks %v", s2, w.walks)
	}

	// After the list interval: a refresh starts in the background and the
	// caller gets the old sample at once.
	clock = clock.Add(layerListInterval)
	src.mu.Lock()
	src.containers = append(src.containers, docker.LayerContainer{ID: "new", Running: true})
	src.mu.Unlock()
	if s3, _ := l.Usage(ctx); s3 != s {
		t.Fatalf("stale call got %+v, want the previous sample", s3)
	}
	s4 := waitForSample(t, l, func(s layerSample) bool { return s.bytes == 132 })
	// The new container was measured; the running one is not yet due; the
	// stopped one never is; Docker measured the snapshotter layer once.
	if w.count("dir-new") != 1 || w.count("dir-run") != 1 || w.count("dir-stopped") != 1 || src.sizeCalls != 1 {
		t.Errorf("walks %v, Docker size calls %d", w.walks, src.sizeCalls)
	}
	if src.inspects != 4 {
		t.Errorf("%d inspects, want one per container", src.inspects)
	}

	// A minute on, running layers are walked again; a stopped one is not.
	clock = clock.Add(runningRemeasureInterval)
	w.mu.Lock()
	w.usage["dir-run"] = stats.DirUsage{Bytes: 1000, Inodes: 3}
	w.mu.Unlock()
	l.Usage(ctx)
	waitForSample(t, l, func(s layerSample) bool { return s.bytes == 1032 })
	if w.count("dir-run") != 2 || w.count("dir-new") != 2 || w.count("dir-stopped") != 1 {
		t.Errorf("walks after a minute: %v", w.walks)
	}

	// A container that stops is measured once more; a removed one drops out.
	clock = clock.Add(layerListInterval)
	src.mu.Lock()
	src.containers = []docker.LayerContainer{{ID: "run"}, {ID: "stopped"}}
	src.mu.Unlock()
	l.Usage(ctx)
	final := waitForSample(t, l, func(s layerSample) bool { return s.bytes == 1020 })
	if w.count("dir-run") != 3 || !final.inodesKnown || final.inodes != 5 {
		t.Errorf("after stop: walks %v, sample %+v", w.walks, final)
	}
	if s4.at.Equal(final.at) {
		t.Errorf("sample time not updated")
	}
}

func waitForSample(t *testing.T, l *LayerSampler, ok func(layerSample) bool) layerSample {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		s, busy := l.sample, l.refreshing != nil
		l.mu.Unlock()
		if s != nil && !busy && ok(*s) {
			return *s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sample never matched; last %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLayerUsagePerContainer(t *testing.T) {
	src := &fakeLayers{containers: []docker.LayerContainer{{ID: "run", Running: true}}}
	w := &fakeWalker{walks: map[string]int{}, usage: map[string]stats.DirUsage{
		"dir-run": {Bytes: 100, Inodes: 3},
		"dir-new": {Bytes: 5, Inodes: 1},
	}}
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	l := NewLayerSampler(src)
	l.walk = w.walk
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	ctx := context.Background()
	lists := func() int { src.mu.Lock(); defer src.mu.Unlock(); return src.lists }

	// Not measured yet: no figure, and no waiting; a refresh starts.
	if _, _, _, ok := l.Container(ctx, "run"); ok {
		t.Fatal("a figure before any measure")
	}
	waitForSample(t, l, func(s layerSample) bool { return s.bytes == 100 })
	u, at, inodesKnown, ok := l.Container(ctx, "run")
	if !ok || u.Bytes != 100 || u.Inodes != 3 || !inodesKnown || !at.Equal(time.Unix(1000, 0)) {
		t.Fatalf("Container(run) = %+v %v %v %v", u, at, inodesKnown, ok)
	}

	// Polled past the list interval, with every container measured:
	// Docker is not listed again.
	advance(layerListInterval)
	l.Container(ctx, "run")
	l.mu.Lock()
	busy := l.refreshing != nil
	l.mu.Unlock()
	if busy || lists() != 1 {
		t.Errorf("a known container's stats started a refresh (lists %d)", lists())
	}

	// A container not measured yet does start one.
	src.mu.Lock()
	src.containers = append(src.containers, docker.LayerContainer{ID: "new", Running: true})
	src.mu.Unlock()
	if _, _, _, ok := l.Container(ctx, "new"); ok {
		t.Fatal("a figure for a container never measured")
	}
	waitForSample(t, l, func(s layerSample) bool { return s.bytes == 105 })
	if u, _, _, ok := l.Container(ctx, "new"); !ok || u.Bytes != 5 {
		t.Errorf("Container(new) = %+v %v", u, ok)
	}

	// Running layers due for a new walk: a refresh starts.
	advance(runningRemeasureInterval)
	l.Container(ctx, "run")
	waitForSample(t, l, func(s layerSample) bool { return true })
	if w.count("dir-run") != 2 {
		t.Errorf("walks %v, want the running layer walked again", w.walks)
	}
}

// panickyLayers panics listing the containers the first time.
type panickyLayers struct {
	fakeLayers
	once sync.Once
}

func (p *panickyLayers) ListLayerContainers(ctx context.Context) ([]docker.LayerContainer, error) {
	p.once.Do(func() { panic("boom") })
	return p.fakeLayers.ListLayerContainers(ctx)
}

func TestALayerRefreshThatPanicsEndsAsAnError(t *testing.T) {
	src := &panickyLayers{fakeLayers: fakeLayers{containers: []docker.LayerContainer{{ID: "a"}}}}
	w := &fakeWalker{walks: map[string]int{}, usage: map[string]stats.DirUsage{"dir-a": {Bytes: 10, Inodes: 1}}}
	l := NewLayerSampler(src)
	l.walk = w.walk
	if _, err := l.Usage(context.Background()); !errors.Is(err, errdefs.ErrInternal) {
		t.Fatalf("the first sample: %v, want the refresh's panic as an internal error", err)
	}
	s, err := l.Usage(context.Background()) // a new refresh
	if err != nil || s.bytes != 10 {
		t.Fatalf("the next sample: %+v, %v", s, err)
	}
}
