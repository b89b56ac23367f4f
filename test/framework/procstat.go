package framework

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// ProcSet names a group of processes by what can be seen in /proc: the
// roots, their descendants when asked, and every process whose command line
// contains one of marks (shims, which their parent leaves to init).
type ProcSet struct {
	Roots       []int
	Descendants bool
	Marks       []string
}

// CPUSample is one interval's CPU (in cores) and the RSS at its end, summed
// over a set's processes (pages shared between them count once each).
type CPUSample struct {
	Cores float64
	Memory
}

// Memory is a set's memory, summed over its processes: RSS, in which pages
// they share (a binary's text, say) count once per process, and PSS, in
// which each process is charged its share of them, so that the sum is what
// the set takes.
type Memory struct {
	RSSMiB float64
	PSSMiB float64
	Procs  int
}

// procInfo is what /proc says of one process.
type procInfo struct {
	ppid     int
	ticks    uint64 // utime + stime
	rssPages uint64
	cmdline  string
}

// readProcs reads every process's stat and command line; processes that
// exit meanwhile are left out.
func readProcs() map[int]procInfo {
	entries, _ := os.ReadDir("/proc")
	procs := make(map[int]procInfo, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces and parentheses: the
		// fields that follow start after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 22 {
			continue
		}
		// f[0] is field 3 (state): ppid is 4, utime 14, stime 15, rss 24.
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseUint(f[11], 10, 64)
		stime, _ := strconv.ParseUint(f[12], 10, 64)
		rss, _ := strconv.ParseUint(f[21], 10, 64)
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		procs[pid] = procInfo{ppid: ppid, ticks: utime + stime, rssPages: rss,
			cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))}
	}
	return procs
}

// members are the set's processes among procs: the roots and their
// descendants first, then the marked processes (whose own children, a
// shim's container processes, are not the set's).
func (s ProcSet) members(procs map[int]procInfo) map[int]bool {
	in := map[int]bool{}
	for _, pid := range s.Roots {
		if _, ok := procs[pid]; ok {
			in[pid] = true
		}
	}
	for grew := s.Descendants; grew; {
		grew = false
		for pid, p := range procs {
			if !in[pid] && in[p.ppid] {
				in[pid], grew = true, true
			}
		}
	}
	for pid, p := range procs {
		for _, m := range s.Marks {
			if strings.Contains(p.cmdline, m) {
				in[pid] = true
			}
		}
	}
	return in
}

// Sampler reads the sets' CPU and RSS at an interval until stopped.
type Sampler struct {
	sets    map[string]ProcSet
	every   time.Duration
	quit    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples map[string][]CPUSample
	cpuSecs map[string]float64
}

// StartSampler reads the sets every interval until Stop.
func StartSampler(sets map[string]ProcSet, every time.Duration) *Sampler {
	s := &Sampler{sets: sets, every: every, quit: make(chan struct{}), done: make(chan struct{}),
		samples: map[string][]CPUSample{}, cpuSecs: map[string]float64{}}
	go s.run()
	return s
}

func (s *Sampler) run() {
	defer close(s.done)
	prev, prevAt := readProcs(), time.Now()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		stopping := false
		select {
		case <-tick.C:
		case <-s.quit:
			stopping = true
		}
		cur, at := readProcs(), time.Now()
		s.record(prev, cur, at.Sub(prevAt))
		prev, prevAt = cur, at
		if stopping {
			return
		}
	}
}

// record adds one interval: the CPU ticks each member used since prev (all
// of them for a process that was not there yet) and the RSS now.
func (s *Sampler) record(prev, cur map[int]procInfo, dt time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, set := range s.sets {
		var ticks uint64
		members := set.members(cur)
		for pid := range members {
			p := cur[pid]
			if old, ok := prev[pid]; ok && old.ticks <= p.ticks {
				ticks += p.ticks - old.ticks
			} else if !ok {
				ticks += p.ticks
			}
		}
		secs := float64(ticks) / clockTicks
		s.cpuSecs[name] += secs
		s.samples[name] = append(s.samples[name], CPUSample{Cores: secs / dt.Seconds(), Memory: memory(cur, members)})
	}
}

// Stop takes a last sample and returns every set's samples and the CPU
// seconds each used in all.
func (s *Sampler) Stop() (map[string][]CPUSample, map[string]float64) {
	close(s.quit)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.cpuSecs
}

// Memory is the set's memory now.
func (s ProcSet) Memory() Memory {
	procs := readProcs()
	return memory(procs, s.members(procs))
}

func memory(procs map[int]procInfo, members map[int]bool) Memory {
	var pages, pssKiB uint64
	for pid := range members {
		pages += procs[pid].rssPages
		pssKiB += readPSS(pid)
	}
	return Memory{
		RSSMiB: float64(pages) * float64(os.Getpagesize()) / (1 << 20),
		PSSMiB: float64(pssKiB) / 1024,
		Procs:  len(members),
	}
}

// readPSS is a process's proportional set size in KiB (0 once it is gone).
func readPSS(pid int) uint64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// StackProcs is d's process set with extra roots (a Berth on it): dockerd,
// its containerd (a child) and their shims, which their containerd leaves
// to init and which name the daemon's directory in their command lines.
func (d *Dockerd) StackProcs(roots ...int) ProcSet {
	return ProcSet{Roots: append(roots, d.Pid()), Descendants: true, Marks: []string{d.Dir + "/"}}
}

// ContainerdProcs are the containerd hack/setup-containerd.sh started at
// endpoint alone (own) and with its shims (stack, which name its socket
// with -address); its pidfile is next to the socket.
func ContainerdProcs(endpoint string) (own, stack ProcSet, err error) {
	sock := strings.TrimPrefix(endpoint, "unix://")
	data, err := os.ReadFile(filepath.Join(filepath.Dir(sock), "containerd.pid"))
	if err != nil {
		return own, stack, fmt.Errorf("containerd's pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return own, stack, fmt.Errorf("containerd's pidfile: %w", err)
	}
	return ProcSet{Roots: []int{pid}}, ProcSet{Roots: []int{pid}, Marks: []string{"-address " + sock + " "}}, nil
}
