package stats

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
)

// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on every Linux ABI).
const userHZ = 100

func (r reader) readV1(c Cgroup, f Fields, st *CgroupStats) error {
	if f&(FieldCPU|FieldCPUDetail) != 0 {
		if dir := c.dir("cpuacct"); dir != "" {
			v, err := r.uint(filepath.Join(dir, "cpuacct.usage"))
			if err != nil {
				return err
			}
			st.CPU.UsageNs, st.HasCPU = v, true
			if f&FieldCPUDetail != 0 {
				if data, err := r.read(filepath.Join(dir, "cpuacct.stat")); err == nil {
					parseV1CPUAcctStat(data, &st.CPU)
				}
			}
		}
		if dir := c.dir("cpu"); dir != "" && f&FieldCPUDetail != 0 {
			if data, err := r.read(filepath.Join(dir, "cpu.stat")); err == nil {
				parseV1CPUStat(data, &st.CPU)
			}
		}
	}
	if f&(FieldMemory|FieldMemoryDetail) != 0 {
		if dir := c.dir("memory"); dir != "" {
			usage, err := r.uint(filepath.Join(dir, "memory.usage_in_bytes"))
			if err != nil {
				return err
			}
			data, err := r.read(filepath.Join(dir, "memory.stat"))
			if err != nil {
				return err
			}
			parseV1MemoryStat(data, usage, &st.Memory)
			st.HasMem = true
			if f&FieldMemoryDetail != 0 {
				st.Memory.MaxUsage, _ = r.uint(filepath.Join(dir, "memory.max_usage_in_bytes"))
				st.Memory.Failcnt, _ = r.uint(filepath.Join(dir, "memory.failcnt"))
				if data, err := r.read(filepath.Join(dir, "memory.oom_control")); err == nil {
					eachKV(data, func(k []byte, v uint64) {
						if string(k) == "oom_kill" {
							st.Memory.OOMKills = v
						}
					})
				}
			}
		}
	}
	if f&FieldPids != 0 {
		if dir := c.dir("pids"); dir != "" {
			v, err := r.uint(filepath.Join(dir, "pids.current"))
			if err != nil {
				return err
			}
			st.Pids.Current, st.HasPids = v, true
			if f&FieldPidsLimit != 0 {
				st.Pids.Limit, _ = r.uint(filepath.Join(dir, "pids.max"))
			}
		}
	}
	if f&FieldIO != 0 {
		if dir := c.dir("blkio"); dir != "" {
			bytesData, err1 := r.read(filepath.Join(dir, "blkio.throttle.io_service_bytes_recursive"))
			var devs []IODevice
			if err1 == nil {
				devs = parseV1Blkio(bytesData, devs, func(d *IODevice, op string, v uint64) {
					switch op {
					case "Read":
						d.ReadBytes = v
					case "Write":
						d.WriteBytes = v
					}
				})
			}
			if opsData, err := r.read(filepath.Join(dir, "blkio.throttle.io_serviced_recursive")); err == nil {
				devs = parseV1Blkio(opsData, devs, func(d *IODevice, op string, v uint64) {
					switch op {
					case "Read":
						d.Reads = v
					case "Write":
						d.Writes = v
					}
				})
			}
			st.IO = devs
		}
	}
	return nil
}

// parseV1CPUAcctStat reads cpuacct.stat ("user N" and "system N", in
// USER_HZ ticks).
func parseV1CPUAcctStat(data []byte, cpu *CPUStats) {
	eachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "user":
			cpu.UserNs = v * (1e9 / userHZ)
		case "system":
			cpu.SystemNs = v * (1e9 / userHZ)
		}
	})
}

// parseV1CPUStat reads the cpu controller's cpu.stat (CFS throttling).
func parseV1CPUStat(data []byte, cpu *CPUStats) {
	eachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "nr_periods":
			cpu.Periods = v
		case "nr_throttled":
			cpu.ThrottledPeriods = v
		case "throttled_time":
			cpu.ThrottledNs = v
		}
	})
}

// parseV1MemoryStat fills m from memory.stat and memory.usage_in_bytes. It
// uses the hierarchical (total_*) figures, which include child cgroups: a
// pod-level cgroup's own figures would be empty.
func parseV1MemoryStat(data []byte, usage uint64, m *MemoryStats) {
	var inactiveFile, limit, memswLimit uint64
	eachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "total_inactive_file":
			inactiveFile = v
		case "total_rss":
			m.RSS = v
		case "total_cache":
			m.Cache = v
		case "total_mapped_file":
			m.MappedFile = v
		case "total_swap":
			m.Swap, m.HasSwap = v, true
		case "total_pgfault":
			m.PageFaults = v
		case "total_pgmajfault":
			m.MajorPageFaults = v
		case "hierarchical_memory_limit":
			limit = v
		case "hierarchical_memsw_limit":
			memswLimit = v
		}
	})
	m.Usage = usage
	m.WorkingSet = workingSet(usage, inactiveFile)
	if limit < unlimited {
		m.Limit = limit
		if memswLimit < unlimited && memswLimit > limit {
			m.SwapLimit = memswLimit - limit
		}
	}
}

// parseV1Blkio reads a blkio.throttle.* file ("8:0 Read 4096" lines and a
// "Total" line) into devs, adding devices not yet there.
func parseV1Blkio(data []byte, devs []IODevice, set func(d *IODevice, op string, v uint64)) []IODevice {
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		fields := strings.Fields(string(line))
		if len(fields) != 3 {
			continue
		}
		maj, min, ok := parseDevice(fields[0])
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			continue
		}
		i := deviceIndex(devs, maj, min)
		if i < 0 {
			devs = append(devs, IODevice{Major: maj, Minor: min})
			i = len(devs) - 1
		}
		set(&devs[i], fields[1], v)
	}
	return devs
}

func parseDevice(s string) (maj, min uint64, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 64)
	min, err2 := strconv.ParseUint(b, 10, 64)
	return maj, min, err1 == nil && err2 == nil
}

func deviceIndex(devs []IODevice, maj, min uint64) int {
	for i := range devs {
		if devs[i].Major == maj && devs[i].Minor == min {
			return i
		}
	}
	return -1
}
