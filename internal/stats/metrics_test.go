package stats

import (
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMetricsMatchTheirDescriptors(t *testing.T) {
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range Descriptors() {
		if descs[d.Name] != nil {
			t.Errorf("descriptor %s twice", d.Name)
		}
		if !strings.HasPrefix(d.Name, "container_") || d.Help == "" {
			t.Errorf("descriptor %+v", d)
		}
		descs[d.Name] = d
	}
	for _, fx := range []struct {
		name string
		cg   Cgroup
	}{{"v1", v1Fixture()}, {"v2", v2Fixture()}} {
		st, err := ReadCgroup(fx.cg, all)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1700000000, 0)
		ms := Metrics(MetricSource{
			Labels:  []string{"app", "/kubepods/pod1/abc", "busybox", "k8s_app_pod", "ns", "pod"},
			Cgroup:  &st,
			Network: []Interface{{Name: "eth0", RxBytes: 10, TxBytes: 20}},
			Fs:      &FsSample{Device: "/dev/vda", UsedBytes: 4096, LimitBytes: 1 << 30, At: now},
			Spec:    &Spec{MemoryLimit: 1 << 20},
			Start:   now.Add(-time.Minute),
			Leaf:    true,
			Now:     now,
		})
		seen := map[string]bool{}
		for _, m := range ms {
			d := descs[m.Name]
			if d == nil {
				t.Errorf("%s: metric %s has no descriptor", fx.name, m.Name)
				continue
			}
			if len(m.LabelValues) != len(d.LabelKeys) {
				t.Errorf("%s: %s has %d label values for keys %v", fx.name, m.Name, len(m.LabelValues), d.LabelKeys)
			}
			seen[m.Name] = true
		}
		for name := range descs {
			if !seen[name] {
				t.Errorf("%s: no %s from a full source", fx.name, name)
			}
		}
	}
}

func TestMetricValues(t *testing.T) {
	st, err := ReadCgroup(v2Fixture(), all)
	if err != nil {
		t.Fatal(err)
	}
	ms := Metrics(MetricSource{
		Labels:     []string{"", "/kubepods/pod1", "", "", "ns", "pod"},
		Cgroup:     &st,
		DeviceName: func(maj, min uint64) string { return map[uint64]string{8: "/dev/sda"}[maj] },
	})
	get := func(name string, extra ...string) (uint64, bool) {
		for _, m := range ms {
			if m.Name == name && strings.Join(m.LabelValues[len(BaseLabels):], ",") == strings.Join(extra, ",") {
				return m.Value.GetValue(), true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		name  string
		extra []string
		want  uint64
	}{
		{"container_cpu_usage_seconds_total", []string{"total"}, 2}, // 2.5s, whole seconds
		{"container_memory_working_set_bytes", nil, 120 << 20},
		{"container_memory_failures_total", []string{"pgmajfault", "hierarchy"}, 30},
		{"container_fs_reads_bytes_total", []string{"/dev/sda"}, 1024},
		{"container_fs_writes_total", []string{"253:1"}, 2}, // unnamed device
		{"container_pressure_io_stalled_seconds_total", nil, 6},
		{"container_threads_max", nil, 1024},
	} {
		if got, ok := get(c.name, c.extra...); !ok || got != c.want {
			t.Errorf("%s%v = %d (found %v), want %d", c.name, c.extra, got, ok, c.want)
		}
	}
	// A pod-level cgroup has only the hierarchy scope.
	if _, ok := get("container_memory_failures_total", "pgfault", "container"); ok {
		t.Errorf("pod-level metrics have a container scope")
	}
	for _, m := range ms {
		if m.Timestamp != 0 {
			t.Errorf("%s read live has timestamp %d", m.Name, m.Timestamp)
		}
	}
}
