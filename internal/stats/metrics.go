package stats

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BaseLabels are the labels every metric carries, named as kubelet's
// /metrics/cadvisor endpoint names them (so dashboards written for cAdvisor
// keep working): container is the Kubernetes container name ("" for the
// pod-level cgroup, "POD" for the sandbox's network), id the cgroup path,
// image the container's image, name the Docker container name.
var BaseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

// Metric groups: which figures a metric is made from.
const (
	groupCPU      = "cpu"
	groupMemory   = "memory"
	groupOOM      = "oom"
	groupSpec     = "spec"
	groupStart    = "start"
	groupProcess  = "process"
	groupNetwork  = "network"
	groupFs       = "fs"
	groupDiskIO   = "diskio"
	groupPressure = "pressure"
	groupSeen     = "seen"
)

type metricDef struct {
	name  string
	help  string
	typ   runtimeapi.MetricType
	group string
	extra []string // label keys after BaseLabels
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// defs is the cAdvisor-compatible metric set, by cAdvisor's names.
var defs = []metricDef{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, groupCPU, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, groupCPU, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, groupCPU, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, groupCPU, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, groupCPU, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, groupCPU, nil},

	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", gauge, groupMemory, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, groupMemory, nil},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, groupMemory, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, groupMemory, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, groupMemory, nil},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, groupMemory, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", gauge, groupMemory, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits", counter, groupMemory, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, groupMemory, []string{"failure_type", "scope"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container", counter, groupOOM, nil},

	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, groupSpec, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, groupSpec, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, groupSpec, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, groupSpec, nil},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, groupSpec, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, groupStart, nil},

	{"container_threads", "Number of threads running inside the container", gauge, groupProcess, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", gauge, groupProcess, nil},
	{"container_processes", "Number of processes running inside the container.", gauge, groupProcess, nil},

	{"container_network_receive_bytes_total", "Cumulative count of bytes received", counter, groupNetwork, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", counter, groupNetwork, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", counter, groupNetwork, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", counter, groupNetwork, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counter, groupNetwork, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", counter, groupNetwork, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", counter, groupNetwork, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", counter, groupNetwork, []string{"interface"}},

	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, groupFs, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, groupFs, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", gauge, groupFs, []string{"device"}},
	{"container_fs_inodes_free", "Number of available Inodes", gauge, groupFs, []string{"device"}},

	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", counter, groupDiskIO, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", counter, groupDiskIO, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed", counter, groupDiskIO, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed", counter, groupDiskIO, []string{"device"}},

	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU pressure.", counter, groupPressure, nil},
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, groupPressure, nil},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory pressure.", counter, groupPressure, nil},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, groupPressure, nil},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO pressure.", counter, groupPressure, nil},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, groupPressure, nil},

	{"container_last_seen", "Last time a container was seen by the exporter", gauge, groupSeen, nil},
}

// Descriptors returns the descriptors of every metric Metrics produces.
func Descriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(defs))
	for _, d := range defs {
		keys := make([]string, 0, len(BaseLabels)+len(d.extra))
		keys = append(append(keys, BaseLabels...), d.extra...)
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: keys})
	}
	return out
}

// FsSample is a container's writable-layer usage on its filesystem.
type FsSample struct {
	Device     string // the filesystem's device, as mountinfo names it
	UsedBytes  uint64
	LimitBytes uint64 // the filesystem's capacity
	// InodesTotal and InodesFree are the filesystem's.
	InodesTotal uint64
	InodesFree  uint64
	// At is when UsedBytes was measured (a cached sample), zero if live.
	At time.Time
}

// Spec is the configured limits of a container (cAdvisor's "spec"
// metrics), as far as they are known.
type Spec struct {
	CPUShares, CPUQuota, CPUPeriod uint64
	MemoryLimit, SwapLimit         uint64
}

// MetricSource is everything known of one cgroup (a container, a pod) or
// network namespace, for Metrics.
type MetricSource struct {
	// Labels are the values of BaseLabels, in order.
	Labels  []string
	Cgroup  *CgroupStats
	Network []Interface
	Fs      *FsSample
	Spec    *Spec
	// Start is when the container started; zero leaves the metric out.
	Start time.Time
	// Leaf is true for a container's cgroup (no children), false for a
	// pod's: it decides the scope of container_memory_failures_total.
	Leaf bool
	// DeviceName names a block device by number ("/dev/vda"); nil uses
	// "major:minor".
	DeviceName func(major, minor uint64) string
	// Now is the collection time, for container_last_seen.
	Now time.Time
}

// Metrics converts what src holds into CRI metrics, with the names and
// labels Descriptors declares. Values are integers (the CRI Metric value
// is a uint64): seconds counters are whole seconds, rounded down.
func Metrics(src MetricSource) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	emit := func(name string, typ runtimeapi.MetricType, v uint64, at time.Time, extra ...string) {
		labels := make([]string, 0, len(src.Labels)+len(extra))
		labels = append(append(labels, src.Labels...), extra...)
		m := &runtimeapi.Metric{Name: name, MetricType: typ, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
		if !at.IsZero() {
			m.Timestamp = at.UnixNano()
		}
		out = append(out, m)
	}
	var none time.Time
	secs := func(ns uint64) uint64 { return ns / uint64(time.Second) }
	if cg := src.Cgroup; cg != nil {
		if cg.HasCPU {
			c := cg.CPU
			emit("container_cpu_usage_seconds_total", counter, secs(c.UsageNs), none, "total")
			emit("container_cpu_user_seconds_total", counter, secs(c.UserNs), none)
			emit("container_cpu_system_seconds_total", counter, secs(c.SystemNs), none)
			emit("container_cpu_cfs_periods_total", counter, c.Periods, none)
			emit("container_cpu_cfs_throttled_periods_total", counter, c.ThrottledPeriods, none)
			emit("container_cpu_cfs_throttled_seconds_total", counter, secs(c.ThrottledNs), none)
		}
		if cg.HasMem {
			m := cg.Memory
			emit("container_memory_usage_bytes", gauge, m.Usage, none)
			emit("container_memory_working_set_bytes", gauge, m.WorkingSet, none)
			emit("container_memory_rss", gauge, m.RSS, none)
			emit("container_memory_cache", gauge, m.Cache, none)
			emit("container_memory_mapped_file", gauge, m.MappedFile, none)
			emit("container_memory_swap", gauge, m.Swap, none)
			emit("container_memory_max_usage_bytes", gauge, m.MaxUsage, none)
			emit("container_memory_failcnt", counter, m.Failcnt, none)
			scopes := []string{"hierarchy"}
			if src.Leaf {
				scopes = append(scopes, "container")
			}
			for _, scope := range scopes {
				emit("container_memory_failures_total", counter, m.PageFaults, none, "pgfault", scope)
				emit("container_memory_failures_total", counter, m.MajorPageFaults, none, "pgmajfault", scope)
			}
			emit("container_oom_events_total", counter, m.OOMKills, none)
		}
		if cg.HasPids {
			emit("container_threads", gauge, cg.Pids.Current, none)
			emit("container_threads_max", gauge, cg.Pids.Limit, none)
			emit("container_processes", gauge, cg.Procs, none)
		}
		for _, d := range cg.IO {
			dev := deviceName(src.DeviceName, d.Major, d.Minor)
			emit("container_fs_reads_bytes_total", counter, d.ReadBytes, none, dev)
			emit("container_fs_writes_bytes_total", counter, d.WriteBytes, none, dev)
			emit("container_fs_reads_total", counter, d.Reads, none, dev)
			emit("container_fs_writes_total", counter, d.Writes, none, dev)
		}
		for _, p := range []struct {
			res string
			p   *Pressure
		}{{"cpu", cg.PSI.CPU}, {"memory", cg.PSI.Memory}, {"io", cg.PSI.IO}} {
			if p.p == nil {
				continue
			}
			emit("container_pressure_"+p.res+"_waiting_seconds_total", counter, p.p.Some.TotalUs/1e6, none)
			emit("container_pressure_"+p.res+"_stalled_seconds_total", counter, p.p.Full.TotalUs/1e6, none)
		}
	}
	if s := src.Spec; s != nil {
		emit("container_spec_memory_limit_bytes", gauge, s.MemoryLimit, none)
		emit("container_spec_memory_swap_limit_bytes", gauge, s.SwapLimit, none)
		emit("container_spec_cpu_shares", gauge, s.CPUShares, none)
		emit("container_spec_cpu_quota", gauge, s.CPUQuota, none)
		emit("container_spec_cpu_period", gauge, s.CPUPeriod, none)
	}
	if !src.Start.IsZero() {
		emit("container_start_time_seconds", gauge, uint64(max(src.Start.Unix(), 0)), none)
	}
	for _, i := range src.Network {
		emit("container_network_receive_bytes_total", counter, i.RxBytes, none, i.Name)
		emit("container_network_receive_packets_total", counter, i.RxPackets, none, i.Name)
		emit("container_network_receive_packets_dropped_total", counter, i.RxDropped, none, i.Name)
		emit("container_network_receive_errors_total", counter, i.RxErrors, none, i.Name)
		emit("container_network_transmit_bytes_total", counter, i.TxBytes, none, i.Name)
		emit("container_network_transmit_packets_total", counter, i.TxPackets, none, i.Name)
		emit("container_network_transmit_packets_dropped_total", counter, i.TxDropped, none, i.Name)
		emit("container_network_transmit_errors_total", counter, i.TxErrors, none, i.Name)
	}
	if fs := src.Fs; fs != nil {
		emit("container_fs_usage_bytes", gauge, fs.UsedBytes, fs.At, fs.Device)
		emit("container_fs_limit_bytes", gauge, fs.LimitBytes, none, fs.Device)
		emit("container_fs_inodes_total", gauge, fs.InodesTotal, none, fs.Device)
		emit("container_fs_inodes_free", gauge, fs.InodesFree, none, fs.Device)
	}
	if !src.Now.IsZero() {
		emit("container_last_seen", gauge, uint64(max(src.Now.Unix(), 0)), none)
	}
	return out
}

func deviceName(name func(uint64, uint64) string, major, minor uint64) string {
	if name != nil {
		if n := name(major, minor); n != "" {
			return n
		}
	}
	return itoa(major) + ":" + itoa(minor)
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
