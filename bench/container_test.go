package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/test/framework"
)

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: framework.TestImage},
		Command:  []string{"sleep", "3600"},
		Labels:   map[string]string{"berth-bench": "1"},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// BenchmarkCreateStartContainer alternates Berth's CreateContainer +
// StartContainer with the same Docker create + start done directly.
func BenchmarkCreateStartContainer(b *testing.B) {
	ctx := context.Background()
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--log-level", "info")})
	dc, err := framework.DockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	podCfg := podConfig("ctrbench", 0)
	podCfg.LogDirectory = b.TempDir()
	podID, err := br.Runtime.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = br.Runtime.StopPodSandbox(ctx, podID)
		_ = br.Runtime.RemovePodSandbox(ctx, podID)
	})
	sb := &store.Sandbox{ID: podID, Metadata: podCfg.Metadata, Namespaces: &runtimeapi.NamespaceOption{}, LogDirectory: podCfg.LogDirectory}

	var raw, berth []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		spec, err := dockerspec.ContainerSpec(sb, containerConfig(fmt.Sprintf("raw%d", i)), dockerspec.ContainerOptions{APIVersion: "1.41", LogMaxSize: "50m", LogMaxFile: "2"})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := dc.ContainerCreate(ctx, client.ContainerCreateOptions{Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig})
		if err == nil {
			_, err = dc.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
		}
		raw = append(raw, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		id, err := br.Runtime.CreateContainer(ctx, podID, containerConfig(fmt.Sprintf("berth%d", i)), podCfg)
		if err == nil {
			err = br.Runtime.StartContainer(ctx, id)
		}
		berth = append(berth, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_, _ = dc.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true})
		_ = br.Runtime.RemoveContainer(ctx, id)
		b.StartTimer()
	}
	report(b, berth, raw)
}

// BenchmarkContainerIndex100 measures ListContainers and ContainerStatus
// with 100 containers, against Docker's list and inspect.
func BenchmarkContainerIndex100(b *testing.B) {
	ctx := context.Background()
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--log-level", "info")})
	dc, err := framework.DockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	const pods, perPod = 10, 10
	var ids []string
	for p := 0; p < pods; p++ {
		podCfg := podConfig("ctrindex", p)
		podCfg.LogDirectory = b.TempDir()
		podID, err := br.Runtime.RunPodSandbox(ctx, podCfg, "")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = br.Runtime.StopPodSandbox(ctx, podID)
			_ = br.Runtime.RemovePodSandbox(ctx, podID)
		})
		for c := 0; c < perPod; c++ {
			id, err := br.Runtime.CreateContainer(ctx, podID, containerConfig(fmt.Sprintf("c%d", c)), podCfg)
			if err == nil {
				err = br.Runtime.StartContainer(ctx, id)
			}
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	filter := &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"berth-bench": "1"}}
	none := &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"berth-bench": "none"}}
	b.Run("ListContainers", func(b *testing.B) {
		var berth, raw, floor []time.Duration
		var cpu time.Duration
		// Each Berth call follows a Docker list, so both meet Berth equally idle.
		dockerList := func() {
			start := time.Now()
			res, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: client.Filters{}.Add("label", "io.kubernetes.docker.type=container", "berth-bench=1")})
			raw = append(raw, time.Since(start))
			if err != nil || len(res.Items) < pods*perPod {
				b.Fatalf("docker ps: %d, %v", len(res.Items), err)
			}
		}
		for i := 0; i < b.N; i++ {
			before := cpuTime(b, br.Pid())
			start := time.Now()
			items, err := br.Runtime.ListContainers(ctx, filter)
			berth = append(berth, time.Since(start))
			cpu += cpuTime(b, br.Pid()) - before
			if err != nil || len(items) != pods*perPod {
				b.Fatalf("ListContainers: %d, %v", len(items), err)
			}
			dockerList()
			start = time.Now()
			if items, err := br.Runtime.ListContainers(ctx, none); err != nil || len(items) != 0 {
				b.Fatalf("ListContainers matching nothing: %d, %v", len(items), err)
			}
			floor = append(floor, time.Since(start))
			dockerList()
		}
		report(b, berth, raw)
		reportCPU(b, cpu, b.N)
		reportFloor(b, floor)
		items, err := br.Runtime.ListContainers(ctx, filter)
		if err != nil {
			b.Fatal(err)
		}
		reportDecode(b, &runtimeapi.ListContainersResponse{Containers: items})
	})
	// Relist is what kubelet's PLEG does every second: ListPodSandbox, then
	// ListContainers at once (kuberuntime's GetPods), after an idle gap
	// (here Docker's list). The relist-ms figure is the pair.
	b.Run("Relist", func(b *testing.B) {
		var pairs, lists, raw []time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			res, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: client.Filters{}.Add("label", "berth-bench=1")})
			raw = append(raw, time.Since(start))
			if err != nil || len(res.Items) < pods*(perPod+1) {
				b.Fatalf("docker ps: %d, %v", len(res.Items), err)
			}
			start = time.Now()
			sandboxes, err := br.Runtime.ListPodSandbox(ctx, nil)
			if err != nil || len(sandboxes) < pods {
				b.Fatalf("ListPodSandbox: %d, %v", len(sandboxes), err)
			}
			listStart := time.Now()
			items, err := br.Runtime.ListContainers(ctx, nil)
			lists = append(lists, time.Since(listStart))
			pairs = append(pairs, time.Since(start))
			if err != nil || len(items) < pods*perPod {
				b.Fatalf("ListContainers: %d, %v", len(items), err)
			}
		}
		b.ReportMetric(float64(median(pairs).Microseconds())/1000, "relist-ms")
		b.ReportMetric(float64(median(lists).Microseconds())/1000, "berth-ms")
		b.ReportMetric(float64(median(raw).Microseconds())/1000, "docker-ms")
	})
	b.Run("ContainerStatus", func(b *testing.B) {
		var berth, raw []time.Duration
		for i := 0; i < b.N; i++ {
			id := ids[i%len(ids)]
			start := time.Now()
			if _, err := br.Runtime.ContainerStatus(ctx, id, false); err != nil {
				b.Fatal(err)
			}
			berth = append(berth, time.Since(start))
			start = time.Now()
			if _, err := dc.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err != nil {
				b.Fatal(err)
			}
			raw = append(raw, time.Since(start))
		}
		report(b, berth, raw)
	})
}
