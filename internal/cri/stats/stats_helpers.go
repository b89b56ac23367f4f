package stats

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/hostfs"
	"github.com/berth-cri/berth/internal/panics"
	kernelstats "github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/store"
)

// itemsPerWorker is the fewest objects worth a goroutine of their own in a
// list call.
const itemsPerWorker = 16

// forEach calls fn for 0..n-1 on up to one goroutine per CPU. The work is
// reading cgroup files, i.e. system calls: on an idle node with several
// cores it goes that many times faster, and more goroutines than CPUs buy
// nothing.
//
// A panic in fn on a worker is raised again in the caller's goroutine once
// every worker has ended, as if fn had run there: the caller is a CRI call,
// which the interceptor answers with Internal (internal/panics logged and
// counted it where it happened).
func forEach(ctx context.Context, n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/itemsPerWorker+1)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	wg.Add(workers)
	for range workers {
		panics.GoThen(ctx, panics.StatsWorker, func() error {
			for failed.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				fn(i)
			}
			return nil
		}, func(err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		panic(*err)
	}
}

// podKeyPrefix keys a pod-level cgroup in the sampler (a pause container's
// cgroup is keyed by the sandbox id, a container's by its id).
const podKeyPrefix = "pod/"

// fsInfoMaxAge is how long the containers' filesystem (statfs and mount
// table) is reused between calls.
const fsInfoMaxAge = 10 * time.Second

// statsState is what the stats RPCs keep between calls.
type statsState struct {
	v2      bool
	sampler *kernelstats.Sampler

	mu     sync.Mutex // guards paths, fs, fsAt
	paths  map[string]cgroupEntry
	fs     *kernelstats.FsUsage
	fsAt   time.Time
	fsPath string
}

// cgroupEntry is the cgroup of one process, remembered with its pid: a
// restarted container has a new pid (and may have a new cgroup). Its files
// stay open while it is cached (a pause container's entry also holds its
// pod-level cgroup's files).
type cgroupEntry struct {
	pid   int
	paths map[string]string
	files *kernelstats.OpenFiles
}

// newStatsState returns the state; its sampler reads what targets lists
// once Start runs it.
func newStatsState(targets func() []kernelstats.Target) *statsState {
	return &statsState{v2: cgroups.IsV2(), paths: map[string]cgroupEntry{}, sampler: kernelstats.NewSampler(targets)}
}

// cgroupOf returns the cgroup of process pid, cached under key.
func (st *statsState) cgroupOf(key string, pid int) (kernelstats.Cgroup, bool) {
	if pid <= 0 {
		return kernelstats.Cgroup{}, false
	}
	st.mu.Lock()
	e, ok := st.paths[key]
	st.mu.Unlock()
	if !ok || e.pid != pid {
		paths, err := cgroups.Paths(pid)
		if err != nil {
			return kernelstats.Cgroup{}, false // the process exited
		}
		e = cgroupEntry{pid: pid, paths: paths, files: kernelstats.NewOpenFiles()}
		st.mu.Lock()
		if old, ok := st.paths[key]; ok {
			old.files.Close()
		}
		st.paths[key] = e
		st.mu.Unlock()
	}
	return kernelstats.Cgroup{V2: st.v2, Paths: e.paths, Files: e.files}, true
}

// forget drops the cached cgroups of objects not in keep.
func (st *statsState) forget(keep map[string]bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, e := range st.paths {
		if !keep[k] {
			e.files.Close()
			delete(st.paths, k)
		}
	}
}

// containerCgroup returns the cgroup of a running container.
func (s *Service) containerCgroup(c *store.Container) (kernelstats.Cgroup, bool) {
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return kernelstats.Cgroup{}, false
	}
	return s.state.cgroupOf(c.ID, c.Pid)
}

// pauseCgroup returns the cgroup of a sandbox's running pause container.
func (s *Service) pauseCgroup(sb *store.Sandbox) (kernelstats.Cgroup, bool) {
	if !sb.Running || sb.ContainerGone {
		return kernelstats.Cgroup{}, false
	}
	return s.state.cgroupOf(sb.ID, sb.Pid)
}

// podCgroup returns a sandbox's pod-level cgroup: the parent of its pause
// container's cgroup, when kubelet gave the pod a cgroup parent (under
// both drivers a container's cgroup is a child of its cgroup parent).
// Without one, the pause container sits directly under Docker's default
// parent, shared by every container, and there is no pod-level cgroup.
func (s *Service) podCgroup(sb *store.Sandbox) (kernelstats.Cgroup, bool) {
	if sb.CgroupParent == "" {
		return kernelstats.Cgroup{}, false
	}
	cg, ok := s.pauseCgroup(sb)
	if !ok {
		return kernelstats.Cgroup{}, false
	}
	return kernelstats.Cgroup{V2: cg.V2, Paths: cgroups.Parent(cg.Paths), Files: cg.Files}, true
}

// statsTargets lists what the sampler reads: every running container, pause
// container and pod-level cgroup. It also forgets (and closes the files of)
// the cgroups of everything no longer running: an open file of a removed
// cgroup would keep the kernel's record of it alive.
func (s *Service) statsTargets() []kernelstats.Target {
	var out []kernelstats.Target
	keep := map[string]bool{}
	for _, sb := range s.store.Sandboxes(nil) {
		if cg, ok := s.pauseCgroup(sb); ok {
			keep[sb.ID] = true
			out = append(out, kernelstats.Target{Key: sb.ID, Cgroup: cg})
		}
		if cg, ok := s.podCgroup(sb); ok {
			out = append(out, kernelstats.Target{Key: podKeyPrefix + sb.ID, Cgroup: cg})
		}
	}
	for _, c := range s.store.Containers(nil) {
		if cg, ok := s.containerCgroup(c); ok {
			keep[c.ID] = true
			out = append(out, kernelstats.Target{Key: c.ID, Cgroup: cg})
		}
	}
	s.state.forget(keep)
	return out
}

// containerFs returns the filesystem the writable layers are on (Docker's
// storage-driver directory, as ImageFsInfo reports it), cached briefly.
func (s *Service) containerFs() *kernelstats.FsUsage {
	h := s.daemon.Health()
	if !h.Ready {
		return nil
	}
	dir := h.Daemon.RootDir
	if h.Daemon.StorageDriver != "" {
		if d := filepath.Join(dir, h.Daemon.StorageDriver); hostfs.IsDir(d) {
			dir = d
		}
	}
	st := s.state
	st.mu.Lock()
	if st.fs != nil && st.fsPath == dir && time.Since(st.fsAt) < fsInfoMaxAge {
		fs := st.fs
		st.mu.Unlock()
		return fs
	}
	st.mu.Unlock()
	fsu, err := kernelstats.Filesystem(dir)
	if err != nil {
		return nil
	}
	st.mu.Lock()
	st.fs, st.fsAt, st.fsPath = &fsu, time.Now(), dir
	st.mu.Unlock()
	return &fsu
}

// writableLayer reports a container's writable-layer usage from the
// background sample, or nil if it has not been measured yet.
func (s *Service) writableLayer(ctx context.Context, id string, fs *kernelstats.FsUsage) *runtimeapi.FilesystemUsage {
	if s.layers == nil || fs == nil {
		return nil
	}
	u, at, inodesKnown, ok := s.layers.Container(ctx, id)
	if !ok {
		return nil
	}
	out := &runtimeapi.FilesystemUsage{
		Timestamp: at.UnixNano(),
		FsId:      &runtimeapi.FilesystemIdentifier{Mountpoint: fs.Mountpoint},
		UsedBytes: &runtimeapi.UInt64Value{Value: u.Bytes},
	}
	if inodesKnown {
		out.InodesUsed = &runtimeapi.UInt64Value{Value: u.Inodes}
	}
	return out
}

// cgroupUsage is one cgroup's figures in CRI form.
type cgroupUsage struct {
	cpu    *runtimeapi.CpuUsage
	memory *runtimeapi.MemoryUsage
	swap   *runtimeapi.SwapUsage
	io     *runtimeapi.IoUsage
	pids   *runtimeapi.ProcessUsage
}

// readUsage reads a cgroup's CPU, memory (and, with f, more) now, and adds
// the CPU rate and PSI from the sampler under key. ok is false if the
// cgroup is gone.
func (s *Service) readUsage(key string, cg kernelstats.Cgroup, f kernelstats.Fields) (kernelstats.CgroupStats, cgroupUsage, bool) {
	st, err := kernelstats.ReadCgroup(cg, f|kernelstats.FieldCPU|kernelstats.FieldMemory)
	if err != nil {
		return kernelstats.CgroupStats{}, cgroupUsage{}, false
	}
	now := time.Now()
	ts := now.UnixNano()
	var u cgroupUsage
	psi, _, havePSI := s.state.sampler.PSI(key)
	if st.HasCPU {
		u.cpu = &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.CPU.UsageNs}}
		if nc, ok := s.state.sampler.NanoCores(key, now, st.CPU.UsageNs); ok {
			u.cpu.UsageNanoCores = &runtimeapi.UInt64Value{Value: nc}
		}
		if havePSI {
			u.cpu.Psi = psiToCRI(psi.CPU)
		}
	}
	if st.HasMem {
		m := st.Memory
		u.memory = &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: m.WorkingSet},
			UsageBytes:      &runtimeapi.UInt64Value{Value: m.Usage},
			RssBytes:        &runtimeapi.UInt64Value{Value: m.RSS},
			PageFaults:      &runtimeapi.UInt64Value{Value: m.PageFaults},
			MajorPageFaults: &runtimeapi.UInt64Value{Value: m.MajorPageFaults},
		}
		if m.Limit > 0 {
			u.memory.AvailableBytes = &runtimeapi.UInt64Value{Value: m.Limit - min(m.Limit, m.WorkingSet)}
		}
		if havePSI {
			u.memory.Psi = psiToCRI(psi.Memory)
		}
		if m.HasSwap {
			u.swap = &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: &runtimeapi.UInt64Value{Value: m.Swap}}
			if m.SwapLimit > 0 {
				u.swap.SwapAvailableBytes = &runtimeapi.UInt64Value{Value: m.SwapLimit - min(m.SwapLimit, m.Swap)}
			}
		}
	}
	if havePSI && psi.IO != nil {
		u.io = &runtimeapi.IoUsage{Timestamp: ts, Psi: psiToCRI(psi.IO)}
	}
	if st.HasPids {
		u.pids = &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: st.Pids.Current}}
	}
	return st, u, true
}

// psiToCRI converts PSI figures; CRI's totals are nanoseconds, the
// kernel's microseconds.
func psiToCRI(p *kernelstats.Pressure) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	conv := func(d kernelstats.PressureData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.TotalUs * 1000, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Some: conv(p.Some), Full: conv(p.Full)}
}
