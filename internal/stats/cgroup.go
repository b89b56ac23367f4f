package stats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Cgroup locates one cgroup in the kernel's cgroup filesystems.
type Cgroup struct {
	// V2 is true on a cgroup v2 (unified-only) host: every file is in
	// Paths[""].
	V2 bool
	// Paths are the cgroup's directories: by controller ("cpu",
	// "cpuacct", "memory", "pids", "blkio") on cgroup v1; "" is the
	// unified hierarchy's directory (v2, or a hybrid host's, where PSI
	// files live), as internal/cgroups.Paths returns them.
	Paths map[string]string
	// Files, if set, keeps the cgroup's files open between readings.
	Files *OpenFiles
}

// dir returns the directory holding a v1 controller's files, or the unified
// directory on v2.
func (c Cgroup) dir(controller string) string {
	if c.V2 {
		return c.Paths[""]
	}
	return c.Paths[controller]
}

// Fields selects what ReadCgroup reads, so a hot path reads only the few
// files it needs.
type Fields uint

const (
	// FieldCPU reads cumulative CPU usage (one file).
	FieldCPU Fields = 1 << iota
	// FieldCPUDetail adds user/system time and CFS throttling.
	FieldCPUDetail
	// FieldMemory reads usage, working set, RSS, faults, swap and the
	// effective limit.
	FieldMemory
	// FieldMemoryDetail adds the v1 max usage and fail count, and OOM kills.
	FieldMemoryDetail
	// FieldPids reads the task count.
	FieldPids
	// FieldPidsLimit adds the task limit.
	FieldPidsLimit
	// FieldPSI reads pressure stall information (where the kernel has it).
	FieldPSI
	// FieldIO reads bytes and operations per block device.
	FieldIO
	// FieldProcesses counts the processes (not threads) in the cgroup.
	FieldProcesses
)

// CgroupStats are what a cgroup's files say at one moment. A field the
// host does not provide is left zero (pointers: nil).
type CgroupStats struct {
	CPU     CPUStats
	Memory  MemoryStats
	Pids    PidsStats
	PSI     PSIStats
	IO      []IODevice
	Procs   uint64 // processes, with FieldProcesses
	HasCPU  bool
	HasMem  bool
	HasPids bool
}

// CPUStats are cumulative CPU figures, in nanoseconds.
type CPUStats struct {
	UsageNs  uint64
	UserNs   uint64
	SystemNs uint64
	// CFS bandwidth control.
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledNs      uint64
}

// MemoryStats are a cgroup's memory figures, in bytes unless named
// otherwise. Hierarchical (the cgroup and its descendants) on both
// versions.
type MemoryStats struct {
	Usage uint64
	// WorkingSet is Usage minus inactive file-backed memory (the page
	// cache the kernel reclaims first), as cAdvisor and containerd compute
	// it: what the OOM killer and kubelet's eviction look at.
	WorkingSet      uint64
	RSS             uint64
	Cache           uint64
	MappedFile      uint64
	Swap            uint64
	HasSwap         bool
	PageFaults      uint64
	MajorPageFaults uint64
	// Limit is the effective memory limit; 0 when unlimited.
	Limit uint64
	// SwapLimit is the swap limit (v2 memory.swap.max; v1 memsw minus
	// memory limit); 0 when unlimited or unknown.
	SwapLimit uint64
	// With FieldMemoryDetail.
	MaxUsage uint64 // v1 only
	Failcnt  uint64 // v1 only
	OOMKills uint64
}

// PidsStats are the task (thread) count and limit (0: unlimited).
type PidsStats struct {
	Current uint64
	Limit   uint64
}

// PSIStats is pressure stall information per resource; nil where the
// kernel or the cgroup does not provide it.
type PSIStats struct {
	CPU    *Pressure
	Memory *Pressure
	IO     *Pressure
}

// Pressure is one resource's PSI: the share of time some (or all)
// non-idle tasks were stalled on it.
type Pressure struct {
	Some PressureData
	Full PressureData
}

// PressureData is one line of a PSI file. Total is in microseconds, as the
// kernel reports it.
type PressureData struct {
	Avg10, Avg60, Avg300 float64
	TotalUs              uint64
}

// IODevice is cumulative block I/O on one device.
type IODevice struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// unlimited is the smallest value treated as "no limit": v1 reports
// "unlimited" as the largest page-aligned int64 (9223372036854771712).
const unlimited = math.MaxInt64 / 2

// ReadCgroup reads the selected fields of a cgroup. It fails if the
// cgroup is gone (its container exited); a missing optional file (swap
// accounting, PSI on a kernel without it or a v1 host without the unified
// hierarchy, a controller the host lacks) leaves its fields zero.
func ReadCgroup(c Cgroup, f Fields) (CgroupStats, error) {
	r := reader{buf: getBuf(), files: c.Files}
	defer putBuf(r.buf)
	var st CgroupStats
	var err error
	if c.V2 {
		err = r.readV2(c.Paths[""], f, &st)
	} else {
		err = r.readV1(c, f, &st)
	}
	if err != nil {
		return CgroupStats{}, err
	}
	if f&FieldPSI != 0 {
		dir := c.Paths[""]
		if dir != "" {
			st.PSI.CPU = r.pressure(filepath.Join(dir, "cpu.pressure"))
			st.PSI.Memory = r.pressure(filepath.Join(dir, "memory.pressure"))
			st.PSI.IO = r.pressure(filepath.Join(dir, "io.pressure"))
		}
	}
	if f&FieldProcesses != 0 {
		dir := c.dir("pids")
		if dir == "" {
			dir = c.dir("cpu")
		}
		if data, err := r.read(filepath.Join(dir, "cgroup.procs")); err == nil {
			st.Procs = uint64(bytes.Count(data, []byte{'\n'}))
		}
	}
	return st, nil
}

// reader reads small files into a reused buffer, through files when set.
type reader struct {
	buf   *[]byte
	files *OpenFiles
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// read returns the contents of a cgroup file; the slice is valid until the
// next read.
func (r reader) read(path string) ([]byte, error) {
	if r.files != nil {
		return r.files.read(path, r.buf)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := (*r.buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil || n == 0 {
			break
		}
	}
	*r.buf = b
	return b, nil
}

// uint reads a file holding one number ("max" reads as 0, unlimited).
func (r reader) uint(path string) (uint64, error) {
	data, err := r.read(path)
	if err != nil {
		return 0, err
	}
	return parseUintOrMax(bytes.TrimSpace(data))
}

func parseUintOrMax(b []byte) (uint64, error) {
	if string(b) == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		// Negative values (v1 cfs_quota_us -1) read as "no limit".
		if _, err2 := strconv.ParseInt(string(b), 10, 64); err2 == nil {
			return 0, nil
		}
		return 0, fmt.Errorf("parsing %q: %w", b, err)
	}
	if v >= unlimited {
		return 0, nil
	}
	return v, nil
}

// pressure reads a PSI file, or returns nil if it cannot.
func (r reader) pressure(path string) *Pressure {
	data, err := r.read(path)
	if err != nil {
		return nil
	}
	p, err := ParsePressure(data)
	if err != nil {
		return nil
	}
	return &p
}

// ParsePressure parses a PSI file ("some avg10=… avg60=… avg300=… total=…"
// and, except for cpu on old kernels, a "full" line).
func ParsePressure(data []byte) (Pressure, error) {
	var p Pressure
	seen := false
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			continue
		}
		var d *PressureData
		switch fields[0] {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			continue
		}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return Pressure{}, fmt.Errorf("malformed PSI field %q", kv)
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				d.TotalUs, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return Pressure{}, fmt.Errorf("PSI field %q: %w", kv, err)
			}
		}
		seen = true
	}
	if !seen {
		return Pressure{}, errors.New("no PSI data")
	}
	return p, nil
}

// eachKV calls fn for every "key value" line of a flat-keyed file
// (memory.stat, cpu.stat), without allocating.
func eachKV(data []byte, fn func(key []byte, value uint64)) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		v, ok := atou(line[sp+1:])
		if !ok {
			continue
		}
		fn(line[:sp], v)
	}
}

// atou parses a decimal number without allocating.
func atou(b []byte) (uint64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// isGone reports whether err means the cgroup no longer exists.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist)
}

// workingSet is usage minus inactive file pages, never below zero.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
