package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/stats"
)

// ContainerLayers is what ImageFsInfo needs from Docker to measure the
// containers' writable layers.
type ContainerLayers interface {
	// ListLayerContainers lists every container and whether it runs.
	ListLayerContainers(ctx context.Context) ([]docker.LayerContainer, error)
	// WritableLayerDir returns the directory of a container's writable
	// layer, "" when Docker does not say.
	WritableLayerDir(ctx context.Context, id string) (string, error)
	// WritableLayerSize has Docker measure a container's writable layer.
	WritableLayerSize(ctx context.Context, id string) (int64, error)
}

// Layer usage sampling bounds. Measuring a writable layer means walking it,
// so the sampler never does that on a caller's time (except for the very
// first sample) and never more than this often.
const (
	// layerListInterval is how stale the list of containers may get: a
	// new container is measured within this long of an ImageFsInfo call.
	layerListInterval = 5 * time.Second
	// runningRemeasureInterval is how often a running container's layer
	// (which may be growing) is walked again. A stopped container's layer
	// does not change: it is walked once after it stops.
	runningRemeasureInterval = time.Minute
	// layerRefreshTimeout bounds one background refresh.
	layerRefreshTimeout = 5 * time.Minute
	// firstSampleWait bounds how long a caller waits for the first sample
	// (after start-up); the refresh goes on in the background.
	firstSampleWait = 5 * time.Second
)

// layerSample is the writable layers' usage at one moment.
type layerSample struct {
	at     time.Time
	bytes  uint64
	inodes uint64
	// inodesKnown is false when some layer was measured by Docker, which
	// reports bytes only (the containerd image store).
	inodesKnown bool
}

type layerEntry struct {
	dir      string // the layer directory; "" when Docker does not say
	usage    stats.DirUsage
	measured time.Time
	running  bool // whether the container ran when last measured
}

// LayerSampler keeps a recent sample of the containers' writable layers:
// their total for ImageFsInfo, and each container's for the stats RPCs.
type LayerSampler struct {
	src     ContainerLayers
	walk    func(context.Context, string) (stats.DirUsage, error)
	now     func() time.Time
	listAge time.Duration
	rerun   time.Duration

	mu         sync.Mutex // guards the fields below
	entries    map[string]*layerEntry
	sample     *layerSample
	lastErr    error
	refreshing chan struct{} // non-nil while a refresh runs; closed when it ends
}

// NewLayerSampler returns a sampler that measures the layers src lists. It
// does no I/O until asked.
func NewLayerSampler(src ContainerLayers) *LayerSampler {
	return &LayerSampler{
		src:     src,
		walk:    stats.WalkUsage,
		now:     time.Now,
		listAge: layerListInterval,
		rerun:   runningRemeasureInterval,
		entries: map[string]*layerEntry{},
	}
}

// Usage returns the latest sample. When it is older than the list interval
// a refresh starts in the background; only a caller that finds no sample
// at all waits for one, for at most firstSampleWait.
func (l *LayerSampler) Usage(ctx context.Context) (layerSample, error) {
	l.mu.Lock()
	sample, refreshing := l.sample, l.kickLocked(ctx)
	l.mu.Unlock()
	if sample != nil {
		return *sample, nil
	}
	timer := time.NewTimer(firstSampleWait)
	defer timer.Stop()
	select {
	case <-refreshing:
	case <-ctx.Done():
		return layerSample{}, ctx.Err()
	case <-timer.C:
		return layerSample{}, fmt.Errorf("the first measure of the writable layers is still running: %w", errdefs.ErrUnavailable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sample == nil {
		return layerSample{}, l.lastErr
	}
	return *l.sample, nil
}

// kickLocked starts a background refresh when the sample is missing or
// older than the list interval and none runs, and returns the running
// refresh's channel (nil if none). l.mu must be held.
func (l *LayerSampler) kickLocked(ctx context.Context) chan struct{} {
	if (l.sample == nil || l.now().Sub(l.sample.at) >= l.listAge) && l.refreshing == nil {
		done := make(chan struct{})
		l.refreshing = done
		ctx := logging.WithLogger(context.Background(), logging.FromContext(ctx))
		var sample layerSample
		// A panic in the measure ends this refresh as an error: the
		// next call starts another.
		panics.GoThen(ctx, panics.LayerSampler, func() (err error) {
			sample, err = l.refresh(ctx)
			return err
		}, func(err error) { l.finish(ctx, sample, err, done) })
	}
	return l.refreshing
}

// Container returns the last measure of one container's writable layer
// and when it was taken (inodes are zero when Docker measured it: bytes
// only). It never waits: a container not measured yet reports false. It
// starts a background refresh for a container not measured yet, and
// otherwise only when running containers are due for a new walk, so that
// stats polled every second do not list Docker's containers every few
// seconds.
func (l *LayerSampler) Container(ctx context.Context, id string) (u stats.DirUsage, at time.Time, inodesKnown, ok bool) {
	l.mu.Lock()
	e := l.entries[id]
	if e == nil || l.sample == nil || l.now().Sub(l.sample.at) >= l.rerun {
		l.kickLocked(ctx)
	}
	l.mu.Unlock()
	if e == nil || e.measured.IsZero() {
		return stats.DirUsage{}, time.Time{}, false, false
	}
	return e.usage, e.measured, e.dir != "", true
}

// refresh lists the containers and measures the layers that may have
// changed.
func (l *LayerSampler) refresh(ctx context.Context) (layerSample, error) {
	ctx, cancel := context.WithTimeout(ctx, layerRefreshTimeout)
	defer cancel()
	return l.measure(ctx)
}

// finish stores a refresh's sample, or its error, and ends the refresh.
func (l *LayerSampler) finish(ctx context.Context, sample layerSample, err error, done chan struct{}) {
	l.mu.Lock()
	if err == nil {
		l.sample = &sample
	} else {
		logging.FromContext(ctx).Warn("measuring containers' writable layers", "error", err)
	}
	l.lastErr = err
	l.refreshing = nil
	l.mu.Unlock()
	close(done)
}

func (l *LayerSampler) measure(ctx context.Context) (layerSample, error) {
	containers, err := l.src.ListLayerContainers(ctx)
	if err != nil {
		return layerSample{}, err
	}
	now := l.now()
	// Only the refresh goroutine makes entries, and it never changes one
	// it has published: it changes copies, and replaces the map under mu
	// at the end, so a concurrent reader sees the old or the new.
	l.mu.Lock()
	old := l.entries
	l.mu.Unlock()
	entries := make(map[string]*layerEntry, len(containers))
	sample := layerSample{at: now, inodesKnown: true}
	for _, c := range containers {
		e := old[c.ID]
		if e == nil {
			dir, err := l.src.WritableLayerDir(ctx, c.ID)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue // removed since the list
			}
			if err != nil {
				return layerSample{}, err
			}
			e = &layerEntry{dir: dir}
		} else {
			cp := *e
			e = &cp
		}
		// Measure a new layer, one whose container started or stopped
		// since, and a running container's layer when its figure is old.
		stale := e.measured.IsZero() || e.running != c.Running || c.Running && now.Sub(e.measured) >= l.rerun
		if stale {
			if err := l.measureOne(ctx, c.ID, e); err != nil {
				if errors.Is(err, errdefs.ErrNotFound) {
					continue
				}
				return layerSample{}, err
			}
			e.measured = now
			e.running = c.Running
		}
		entries[c.ID] = e
		sample.bytes += e.usage.Bytes
		sample.inodes += e.usage.Inodes
		if e.dir == "" {
			sample.inodesKnown = false
		}
	}
	l.mu.Lock()
	l.entries = entries
	l.mu.Unlock()
	return sample, nil
}

// measureOne walks a layer directory, or asks Docker when there is none.
func (l *LayerSampler) measureOne(ctx context.Context, id string, e *layerEntry) error {
	if e.dir == "" {
		size, err := l.src.WritableLayerSize(ctx, id)
		if err != nil {
			return err
		}
		e.usage = stats.DirUsage{Bytes: uint64(max(size, 0))}
		return nil
	}
	u, err := l.walk(ctx, e.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.NotFound("writable layer of container", id)
	}
	if err != nil {
		return err
	}
	e.usage = u
	return nil
}
