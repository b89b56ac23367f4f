// Package logs forwards each container's output from Docker's json-file log
// into the file kubelet asked for, in the CRI log format, exactly once across
// kubelet's log rotation, Docker's log rotation and Berth restarts.
//
// Docker keeps writing its own json-file log (so `docker logs` works); Berth
// tails that file directly, not through Docker's API, and remembers how far
// it got in a small position file per container. See docs/logging.md.
package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/panics"
)

// NOTE: every container whose output is forwarded must use Docker's
// json-file log driver with max-file of at least 2 (with 1, Docker 20.10
// truncates the file in place and lines Berth had not read are lost) and
// compress off (Berth cannot read compressed rotations). Berth loses lines
// only if it falls behind by more than max-size × (max-file-1). Berth's
// --docker-log-max-size and --docker-log-max-file set them.

var errUnavailable = errdefs.ErrUnavailable

func errNotFollowed(id string) error {
	return fmt.Errorf("container %s: its log is not being forwarded (the container is not running): %w", id, errdefs.ErrFailedPrecondition)
}

// options are the Manager's tunables; tests shorten the periods.
type options struct {
	// tick is how often positions are saved and files polled, for changes
	// inotify did not report (or cannot: it may be unavailable).
	tick time.Duration
	// exitGrace is how long a follower keeps forwarding after Exited.
	exitGrace time.Duration
	// workers is how many containers are forwarded at once.
	workers int
}

func defaultOptions() options {
	return options{tick: time.Second, exitGrace: 2 * time.Second, workers: 4}
}

// Manager forwards the logs of all followed containers. One inotify watcher
// wakes a small pool of workers when Docker writes, so idle containers cost
// nothing; a slow poll catches what inotify misses.
type Manager struct {
	log     *slog.Logger
	states  *stateStore
	opts    options
	watcher *fsnotify.Watcher // nil when inotify is unavailable: polling only

	mu        sync.Mutex // guards followers, dirs, closed
	followers map[string]*follower
	dirs      map[string]*watchedDir // directory → followers with a Docker log in it
	closed    bool

	qmu     sync.Mutex // guards queue, qclosed and each follower's queued and running
	qcond   *sync.Cond
	queue   []*follower
	qclosed bool

	done chan struct{}
	wg   sync.WaitGroup

	stats struct {
		turns atomic.Int64 // worker turns
		reads atomic.Int64 // reads of Docker's files
		ticks atomic.Int64
	}
}

// NewManager keeps per-container forwarding state (read position) under
// stateDir (created 0700).
func NewManager(stateDir string, log *slog.Logger) (*Manager, error) {
	return newManager(stateDir, log, defaultOptions())
}

func newManager(stateDir string, log *slog.Logger, opts options) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	states, err := openStateStore(stateDir)
	if err != nil {
		return nil, fmt.Errorf("log state directory: %w", err)
	}
	m := &Manager{
		log:       log.With("component", "logs"),
		states:    states,
		opts:      opts,
		followers: map[string]*follower{},
		dirs:      map[string]*watchedDir{},
		done:      make(chan struct{}),
	}
	m.qcond = sync.NewCond(&m.qmu)
	if w, err := fsnotify.NewWatcher(); err != nil {
		m.log.Warn("inotify is unavailable; container logs are polled every tick", "err", err, "tick", opts.tick)
	} else {
		m.watcher = w
		m.wg.Add(1)
		panics.Go(m.logCtx(), panics.Logs, m.watch)
	}
	for range opts.workers {
		m.wg.Add(1)
		panics.Go(m.logCtx(), panics.Logs, m.work)
	}
	m.wg.Add(1)
	panics.Go(m.logCtx(), panics.Logs, m.tickLoop)
	return m, nil
}

// Follow starts, or resumes after a Berth restart from the saved position,
// forwarding container id's Docker json log to criPath. Idempotent (a second
// call for a followed id is a no-op). The parent dir of criPath is created
// (0755) if kubelet has not. running reports whether the container still
// runs; it is called once, by Follow (nil means it runs). If it does not,
// Follow forwards what is left and stops, as after Exited.
func (m *Manager) Follow(id, dockerLogPath, criPath string, running func() bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	if !filepath.IsAbs(criPath) {
		return errdefs.InvalidArgument("log_path", "the container log path %q is not absolute", criPath)
	}
	if !filepath.IsAbs(dockerLogPath) {
		return fmt.Errorf("container %s: Docker's log path %q is not absolute: %w", id, dockerLogPath, errdefs.ErrFailedPrecondition)
	}
	isRunning := running == nil || running()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("log manager is closed: %w", errdefs.ErrUnavailable)
	}
	if _, ok := m.followers[id]; ok {
		return nil
	}
	f := &follower{
		m:          m,
		id:         id,
		dockerPath: filepath.Clean(dockerLogPath),
		criPath:    filepath.Clean(criPath),
		log:        m.log.With("container", id),
	}
	st, err := m.states.load(id)
	if err != nil {
		f.log.Warn("ignoring the saved log position", "err", err)
	}
	f.resume = st
	sink, replaced, err := openCRI(f.criPath)
	if err != nil {
		return fmt.Errorf("container %s: %w: %w", id, err, errdefs.ErrInternal)
	}
	if replaced {
		f.log.Info("replaced a symbolic link at the container log path by a regular file (left by cri-dockerd?); Docker's log is forwarded into it in the CRI format", "path", f.criPath)
	}
	f.sink = sink
	if f.sinkID, f.sinkOff, err = fstat(sink); err != nil {
		sink.Close()
		return fmt.Errorf("container %s: %w: %w", id, err, errdefs.ErrInternal)
	}
	if id, _, err := stat(f.dockerPath); err == nil && id == f.sinkID {
		sink.Close()
		return errdefs.InvalidArgument("log_path", "%s is Docker's own log file", criPath)
	}
	m.followers[id] = f
	m.watchDir(f)
	if !isRunning {
		f.exiting = true
		m.startGrace(f)
	}
	m.schedule(f)
	return nil
}

// Exited tells the manager the container has stopped: it forwards whatever
// is left (Docker may flush its last entries shortly after the exit event)
// and then stops following, keeping the position.
func (m *Manager) Exited(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.followers[id]
	if f == nil || f.exiting {
		return
	}
	f.exiting = true
	m.startGrace(f)
	m.schedule(f)
}

// startGrace ends f's forwarding after the grace period. m.mu is held.
func (m *Manager) startGrace(f *follower) {
	time.AfterFunc(m.opts.exitGrace, func() {
		defer panics.Recover(m.logCtx(), panics.Logs, nil)
		f.exitDue.Store(true)
		m.schedule(f)
	})
}

// Reopen makes forwarding continue in a new file at criPath (kubelet renamed
// the old one — log rotation): synchronous; when it returns, every line up
// to now is in the old file and later lines go to the new file. Error
// (wrapping errdefs.ErrFailedPrecondition) if id is not followed.
func (m *Manager) Reopen(id string) error {
	m.mu.Lock()
	f := m.followers[id]
	m.mu.Unlock()
	if f == nil {
		return errNotFollowed(id)
	}
	return f.reopen()
}

// Forget stops forwarding id and deletes its state (container removed).
func (m *Manager) Forget(id string) {
	if checkID(id) != nil {
		return
	}
	m.mu.Lock()
	f := m.followers[id]
	if f != nil {
		m.drop(f)
	}
	m.mu.Unlock()
	if f == nil {
		if err := m.states.remove(id); err != nil {
			m.log.Warn("removing log position", "container", id, "err", err)
		}
		return
	}
	f.stop()
	f.forget()
}

// Close stops all forwarders, saving positions (Berth shutting down).
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	fs := make([]*follower, 0, len(m.followers))
	for _, f := range m.followers {
		fs = append(fs, f)
	}
	m.mu.Unlock()

	close(m.done)
	if m.watcher != nil {
		m.watcher.Close()
	}
	m.qmu.Lock()
	m.qclosed = true
	m.qcond.Broadcast()
	m.qmu.Unlock()
	m.wg.Wait()
	for _, f := range fs {
		f.stop()
		if err := f.save(); err != nil {
			f.log.Error("saving log position", "err", err)
		}
	}
}

// finish stops an exited container's follower, keeping its position.
func (m *Manager) finish(f *follower) {
	f.stop()
	if err := f.save(); err != nil {
		f.log.Error("saving log position", "err", err)
	}
	m.mu.Lock()
	if m.followers[f.id] == f {
		m.drop(f)
	}
	m.mu.Unlock()
}

// watchedDir is a directory holding Docker logs of followed containers.
type watchedDir struct {
	followers map[*follower]struct{}
	watched   bool // inotify watches it; else only the poll sees changes
	warned    bool // a failure to watch it was logged
}

// drop removes f from the followed set. m.mu is held.
func (m *Manager) drop(f *follower) {
	delete(m.followers, f.id)
	dir := filepath.Dir(f.dockerPath)
	wd := m.dirs[dir]
	if wd == nil {
		return
	}
	delete(wd.followers, f)
	if len(wd.followers) == 0 {
		delete(m.dirs, dir)
		if wd.watched {
			_ = m.watcher.Remove(dir)
		}
	}
}

// watchDir watches the directory of f's Docker log: Docker writes there and
// rotates by renaming and creating there. m.mu is held.
func (m *Manager) watchDir(f *follower) {
	dir := filepath.Dir(f.dockerPath)
	wd := m.dirs[dir]
	if wd == nil {
		wd = &watchedDir{followers: map[*follower]struct{}{}}
		m.dirs[dir] = wd
		m.addWatch(dir, wd)
	}
	wd.followers[f] = struct{}{}
}

// addWatch tries to watch dir; the tick tries again while it fails (the
// directory may not exist yet). m.mu is held.
func (m *Manager) addWatch(dir string, wd *watchedDir) {
	if m.watcher == nil {
		return
	}
	err := m.watcher.Add(dir)
	wd.watched = err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) && !wd.warned {
		wd.warned = true
		m.log.Warn("cannot watch Docker's log directory; polling it", "dir", dir, "err", err)
	}
}

// logCtx carries the manager's logger, for internal/panics.
func (m *Manager) logCtx() context.Context {
	return logging.WithLogger(context.Background(), m.log)
}

// watch turns inotify events into work.
func (m *Manager) watch() {
	defer m.wg.Done()
	for {
		select {
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			_ = panics.Call(m.logCtx(), panics.Logs, func() error { m.wake(ev.Name); return nil })
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			// Typically a queue overflow: events were lost, so
			// look at everything.
			m.log.Debug("inotify", "err", err)
			m.mu.Lock()
			for _, f := range m.followers {
				m.schedule(f)
			}
			m.mu.Unlock()
		case <-m.done:
			return
		}
	}
}

// wake schedules the followers a change of path concerns: its Docker log or
// a rotation of it.
func (m *Manager) wake(path string) {
	dir, name := filepath.Dir(path), filepath.Base(path)
	m.mu.Lock()
	defer m.mu.Unlock()
	wd := m.dirs[dir]
	if wd == nil {
		return
	}
	for f := range wd.followers {
		base := filepath.Base(f.dockerPath)
		if name == base || strings.HasPrefix(name, base+".") {
			m.schedule(f)
		}
	}
}

// tickLoop saves positions and polls, once a tick.
func (m *Manager) tickLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = panics.Call(m.logCtx(), panics.Logs, func() error { m.tick(); return nil })
		case <-m.done:
			return
		}
	}
}

func (m *Manager) tick() {
	m.stats.ticks.Add(1)
	m.mu.Lock()
	fs := make([]*follower, 0, len(m.followers))
	for _, f := range m.followers {
		fs = append(fs, f)
	}
	for dir, wd := range m.dirs {
		if !wd.watched {
			m.addWatch(dir, wd)
		}
	}
	m.mu.Unlock()
	for _, f := range fs {
		if f.changed() {
			m.schedule(f)
		}
		if err := f.save(); err != nil {
			f.reportErr(err)
		}
	}
}

// schedule queues f for a turn, unless it is queued already; if a worker
// is running it, it runs again afterwards.
func (m *Manager) schedule(f *follower) {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.qclosed || f.queued {
		return
	}
	f.queued = true
	if !f.running {
		m.queue = append(m.queue, f)
		m.qcond.Signal()
	}
}

// work runs turns.
func (m *Manager) work() {
	defer m.wg.Done()
	m.qmu.Lock()
	defer m.qmu.Unlock()
	for {
		for len(m.queue) == 0 && !m.qclosed {
			m.qcond.Wait()
		}
		if m.qclosed {
			return
		}
		f := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		f.queued, f.running = false, true
		m.qmu.Unlock()

		// A panic in a turn ends it; the tick retries the follower.
		var more bool
		_ = panics.Call(m.logCtx(), panics.Logs, func() error { more = f.turn(); return nil })
		m.stats.turns.Add(1)
		if !more && f.exitDue.Load() && !f.hasPending() {
			// Done; with output still waiting for a write, the
			// tick retries and finishes later.
			m.finish(f)
		}

		m.qmu.Lock()
		f.running = false
		if more {
			f.queued = true
		}
		if f.queued && !m.qclosed {
			m.queue = append(m.queue, f)
			m.qcond.Signal()
		}
	}
}
