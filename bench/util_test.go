package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func runtimeImageSpec(ref string) *runtimeapi.ImageSpec {
	return &runtimeapi.ImageSpec{Image: ref}
}

// cpuTime is the CPU time pid's threads have used so far, from the
// kernel's per-thread schedstat (nanosecond resolution, unlike the clock
// ticks of /proc/<pid>/stat). Unlike a wall-clock latency it does not
// grow when other work on the machine keeps the process waiting for a
// CPU, so it is the figure to compare on a loaded machine.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of %d: %v", pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			b.Fatalf("%s: empty", f)
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %v", f, err)
		}
		total += time.Duration(ns)
	}
	return total
}

// reportCPU reports the mean CPU time Berth spent per call.
func reportCPU(b *testing.B, cpu time.Duration, calls int) {
	if calls > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(calls)/1000, "berth-cpu-ms")
	}
}

// reportFloor reports the median latency of the same list call matching no
// record: the round trip through both gRPC stacks and the kernel that every
// CRI call pays, which the list's own cost comes on top of.
func reportFloor(b *testing.B, floor []time.Duration) {
	b.ReportMetric(float64(median(floor).Microseconds())/1000, "floor-ms")
}

// reportDecode reports what decoding resp costs the client, measured in
// this process: part of every list's latency that no server can remove.
func reportDecode(b *testing.B, resp proto.Message) {
	data, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	const rounds = 200
	start := time.Now()
	for range rounds {
		if err := proto.Unmarshal(data, resp.ProtoReflect().New().Interface()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/rounds/1000, "client-decode-ms")
}
