package stats

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
)

func (r reader) readV2(dir string, f Fields, st *CgroupStats) error {
	if f&(FieldCPU|FieldCPUDetail) != 0 {
		// cpu.stat is a core file: it is there without the cpu controller.
		data, err := r.read(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return err
		}
		parseV2CPUStat(data, &st.CPU)
		st.HasCPU = true
	}
	if f&(FieldMemory|FieldMemoryDetail) != 0 {
		if usage, err := r.uint(filepath.Join(dir, "memory.current")); err == nil {
			data, err := r.read(filepath.Join(dir, "memory.stat"))
			if err != nil {
				return err
			}
			parseV2MemoryStat(data, usage, &st.Memory)
			st.HasMem = true
			st.Memory.Limit, _ = r.uint(filepath.Join(dir, "memory.max"))
			if swap, err := r.uint(filepath.Join(dir, "memory.swap.current")); err == nil {
				st.Memory.Swap, st.Memory.HasSwap = swap, true
				st.Memory.SwapLimit, _ = r.uint(filepath.Join(dir, "memory.swap.max"))
			}
			if f&FieldMemoryDetail != 0 {
				st.Memory.MaxUsage, _ = r.uint(filepath.Join(dir, "memory.peak"))
				if data, err := r.read(filepath.Join(dir, "memory.events")); err == nil {
					eachKV(data, func(k []byte, v uint64) {
						if string(k) == "oom_kill" {
							st.Memory.OOMKills = v
						}
					})
				}
			}
		} else if !isGone(err) {
			return err
		} else if _, err := r.read(filepath.Join(dir, "cgroup.procs")); err != nil {
			return err // the cgroup itself is gone
		}
		// else: the memory controller is not enabled for this cgroup.
	}
	if f&FieldPids != 0 {
		if v, err := r.uint(filepath.Join(dir, "pids.current")); err == nil {
			st.Pids.Current, st.HasPids = v, true
			if f&FieldPidsLimit != 0 {
				st.Pids.Limit, _ = r.uint(filepath.Join(dir, "pids.max"))
			}
		}
	}
	if f&FieldIO != 0 {
		if data, err := r.read(filepath.Join(dir, "io.stat")); err == nil {
			st.IO = parseV2IOStat(data)
		}
	}
	return nil
}

// parseV2CPUStat reads cgroup v2 cpu.stat (microseconds).
func parseV2CPUStat(data []byte, cpu *CPUStats) {
	eachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "usage_usec":
			cpu.UsageNs = v * 1000
		case "user_usec":
			cpu.UserNs = v * 1000
		case "system_usec":
			cpu.SystemNs = v * 1000
		case "nr_periods":
			cpu.Periods = v
		case "nr_throttled":
			cpu.ThrottledPeriods = v
		case "throttled_usec":
			cpu.ThrottledNs = v * 1000
		}
	})
}

// parseV2MemoryStat fills m from cgroup v2 memory.stat and memory.current
// (both hierarchical in v2).
func parseV2MemoryStat(data []byte, usage uint64, m *MemoryStats) {
	var inactiveFile uint64
	eachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "inactive_file":
			inactiveFile = v
		case "anon":
			m.RSS = v
		case "file":
			m.Cache = v
		case "file_mapped":
			m.MappedFile = v
		case "pgfault":
			m.PageFaults = v
		case "pgmajfault":
			m.MajorPageFaults = v
		}
	})
	m.Usage = usage
	m.WorkingSet = workingSet(usage, inactiveFile)
}

// parseV2IOStat reads io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 …").
func parseV2IOStat(data []byte) []IODevice {
	var devs []IODevice
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		fields := strings.Fields(string(line))
		if len(fields) < 2 {
			continue
		}
		maj, min, ok := parseDevice(fields[0])
		if !ok {
			continue
		}
		d := IODevice{Major: maj, Minor: min}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				d.ReadBytes = n
			case "wbytes":
				d.WriteBytes = n
			case "rios":
				d.Reads = n
			case "wios":
				d.Writes = n
			}
		}
		devs = append(devs, d)
	}
	return devs
}
