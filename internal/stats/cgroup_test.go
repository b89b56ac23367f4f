package stats

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func v1Fixture() Cgroup {
	paths := map[string]string{"": "testdata/unified"}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
		paths[c] = filepath.Join("testdata/v1", c)
	}
	return Cgroup{Paths: paths}
}

func v2Fixture() Cgroup { return Cgroup{V2: true, Paths: map[string]string{"": "testdata/v2"}} }

const all = FieldCPU | FieldCPUDetail | FieldMemory | FieldMemoryDetail | FieldPids | FieldPidsLimit | FieldPSI | FieldIO | FieldProcesses

func TestReadCgroupV1(t *testing.T) {
	st, err := ReadCgroup(v1Fixture(), all)
	if err != nil {
		t.Fatal(err)
	}
	wantCPU := CPUStats{UsageNs: 1_500_000_000, UserNs: 1_000_000_000, SystemNs: 300_000_000, Periods: 40, ThrottledPeriods: 3, ThrottledNs: 2_500_000_000}
	if !st.HasCPU || st.CPU != wantCPU {
		t.Errorf("CPU = %+v, want %+v", st.CPU, wantCPU)
	}
	wantMem := MemoryStats{
		Usage:      200 << 20,
		WorkingSet: 200<<20 - 60<<20, // usage − total_inactive_file
		RSS:        110 << 20, Cache: 80 << 20, MappedFile: 4 << 20,
		Swap: 1 << 20, HasSwap: true,
		PageFaults: 7000, MajorPageFaults: 12,
		Limit: 512 << 20, SwapLimit: 512 << 20,
		MaxUsage: 300 << 20, Failcnt: 2, OOMKills: 1,
	}
	if !st.HasMem || st.Memory != wantMem {
		t.Errorf("Memory = %+v\nwant %+v", st.Memory, wantMem)
	}
	if !st.HasPids || st.Pids != (PidsStats{Current: 7}) || st.Procs != 2 {
		t.Errorf("Pids = %+v, procs %d", st.Pids, st.Procs)
	}
	if want := []IODevice{{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2}}; !reflect.DeepEqual(st.IO, want) {
		t.Errorf("IO = %+v, want %+v", st.IO, want)
	}
	// PSI from the unified hierarchy of a hybrid host.
	if st.PSI.CPU == nil || st.PSI.CPU.Some.TotalUs != 2_500_000 || st.PSI.CPU.Full.Avg10 != 0.5 {
		t.Errorf("CPU PSI = %+v", st.PSI.CPU)
	}
	if st.PSI.Memory == nil || st.PSI.IO == nil {
		t.Errorf("PSI = %+v", st.PSI)
	}
}

func TestReadCgroupV2(t *testing.T) {
	st, err := ReadCgroup(v2Fixture(), all)
	if err != nil {
		t.Fatal(err)
	}
	wantCPU := CPUStats{UsageNs: 2_500_000_000, UserNs: 2_000_000_000, SystemNs: 500_000_000, Periods: 10, ThrottledPeriods: 4, ThrottledNs: 300_000_000}
	if !st.HasCPU || st.CPU != wantCPU {
		t.Errorf("CPU = %+v, want %+v", st.CPU, wantCPU)
	}
	wantMem := MemoryStats{
		Usage:      150 << 20,
		WorkingSet: 150<<20 - 30<<20, // memory.current − inactive_file
		RSS:        100 << 20, Cache: 40 << 20, MappedFile: 2 << 20,
		Swap: 2 << 20, HasSwap: true,
		PageFaults: 9000, MajorPageFaults: 30,
		Limit:    256 << 20, // swap.max "max": no swap limit
		MaxUsage: 160 << 20, OOMKills: 2,
	}
	if !st.HasMem || st.Memory != wantMem {
		t.Errorf("Memory = %+v\nwant %+v", st.Memory, wantMem)
	}
	if st.Pids != (PidsStats{Current: 3, Limit: 1024}) || st.Procs != 3 {
		t.Errorf("Pids = %+v, procs %d", st.Pids, st.Procs)
	}
	want := []IODevice{{8, 0, 1024, 2048, 3, 4}, {253, 1, 10, 20, 1, 2}}
	if !reflect.DeepEqual(st.IO, want) {
		t.Errorf("IO = %+v, want %+v", st.IO, want)
	}
	if st.PSI.CPU.Some != (PressureData{Avg10: 2, Avg60: 1, Avg300: 0.5, TotalUs: 3_000_000}) {
		t.Errorf("CPU PSI = %+v", st.PSI.CPU)
	}
	if st.PSI.IO.Full.TotalUs != 6_000_000 || st.PSI.Memory.Some.TotalUs != 500 {
		t.Errorf("PSI = %+v %+v", st.PSI.IO, st.PSI.Memory)
	}
}

func TestReadCgroupOnlyWhatIsAsked(t *testing.T) {
	st, err := ReadCgroup(v1Fixture(), FieldCPU)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU.UsageNs != 1_500_000_000 || st.CPU.UserNs != 0 || st.HasMem || st.HasPids || st.PSI.CPU != nil {
		t.Errorf("FieldCPU read more than CPU usage: %+v", st)
	}
}

func TestReadCgroupGone(t *testing.T) {
	gone := Cgroup{Paths: map[string]string{"cpuacct": "testdata/missing", "memory": "testdata/missing"}}
	if _, err := ReadCgroup(gone, FieldCPU|FieldMemory); !isGone(err) {
		t.Errorf("reading a removed v1 cgroup: %v, want not-exist", err)
	}
	if _, err := ReadCgroup(Cgroup{V2: true, Paths: map[string]string{"": "testdata/missing"}}, FieldCPU|FieldMemory); !isGone(err) {
		t.Errorf("reading a removed v2 cgroup: %v, want not-exist", err)
	}
}

func TestV2WithoutMemoryController(t *testing.T) {
	// A v2 cgroup whose parent does not delegate the memory controller:
	// CPU is there (cpu.stat is a core file), memory is not, no error.
	dir := t.TempDir()
	for name, data := range map[string]string{"cpu.stat": "usage_usec 10\n", "cgroup.procs": "1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ReadCgroup(Cgroup{V2: true, Paths: map[string]string{"": dir}}, FieldCPU|FieldMemory)
	if err != nil || st.CPU.UsageNs != 10_000 || st.HasMem {
		t.Errorf("ReadCgroup = %+v, %v", st, err)
	}
}

func TestWorkingSetNeverNegative(t *testing.T) {
	var m MemoryStats
	parseV1MemoryStat([]byte("total_inactive_file 500\nhierarchical_memory_limit 9223372036854771712\n"), 100, &m)
	if m.WorkingSet != 0 || m.Limit != 0 {
		t.Errorf("working set %d limit %d, want 0 and 0 (unlimited)", m.WorkingSet, m.Limit)
	}
}

func TestParsePressure(t *testing.T) {
	// Old kernels have no "full" line for cpu.
	p, err := ParsePressure([]byte("some avg10=0.12 avg60=0.34 avg300=0.56 total=789\n"))
	if err != nil || p.Some != (PressureData{0.12, 0.34, 0.56, 789}) || p.Full != (PressureData{}) {
		t.Errorf("ParsePressure = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "some avg10\n", "some avg10=x\n"} {
		if _, err := ParsePressure([]byte(bad)); err == nil {
			t.Errorf("ParsePressure(%q) succeeded", bad)
		}
	}
}

func TestParseUintOrMax(t *testing.T) {
	for in, want := range map[string]uint64{"max": 0, "-1": 0, "42": 42, "9223372036854771712": 0} {
		got, err := parseUintOrMax([]byte(in))
		if err != nil || got != want {
			t.Errorf("parseUintOrMax(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseUintOrMax([]byte("x")); err == nil {
		t.Error("parseUintOrMax(x) succeeded")
	}
}

func TestParseNetDev(t *testing.T) {
	data, err := os.ReadFile("testdata/netdev")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseNetDev(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []Interface{
		{Name: "eth0", RxBytes: 1 << 20, RxPackets: 1000, RxErrors: 2, RxDropped: 3, TxBytes: 2 << 20, TxPackets: 2000, TxErrors: 4, TxDropped: 5},
		{Name: "net1", RxBytes: 100, RxPackets: 1, TxBytes: 200, TxPackets: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseNetDev = %+v\nwant %+v", got, want)
	}
	if _, err := ParseNetDev([]byte("h1\nh2\n  eth0: 1 2 3\n")); err == nil {
		t.Error("a short line parsed")
	}
}

func TestNetDevOfThisProcess(t *testing.T) {
	ifs, err := NetDev(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			t.Errorf("the loopback is listed")
		}
	}
}
