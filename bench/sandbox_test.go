package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/moby/moby/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/test/framework"
)

func podConfig(name string, i int) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("%s-%d", name, i), Namespace: "berth-bench", Uid: fmt.Sprintf("%s-uid-%d-%d", name, i, time.Now().UnixNano())},
		Hostname: name,
		Labels:   map[string]string{"berth-bench": "1"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// rawSandbox does what RunPodSandbox does, straight on the Docker API and
// libcni: create and start the pause container, inspect it, CNI ADD. It
// returns the pause container's id and the undo.
func rawSandbox(ctx context.Context, dc *client.Client, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, cfg *runtimeapi.PodSandboxConfig) (string, func(), error) {
	spec, err := dockerspec.SandboxSpec(cfg, "", dockerspec.SandboxOptions{Image: "berth.local/pause:1.0", CNI: true, CgroupDriver: "cgroupfs", OOM: dockerspec.OOMPolicy{Clamp: true}})
	if err != nil {
		return "", nil, err
	}
	spec.Name = "raw_" + spec.Name
	unlabel(spec)
	res, err := dc.ContainerCreate(ctx, client.ContainerCreateOptions{Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig})
	if err != nil {
		return "", nil, err
	}
	undo := func() {
		_, _ = dc.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	}
	if _, err := dc.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		undo()
		return "", nil, err
	}
	in, err := dc.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		undo()
		return "", nil, err
	}
	rt := &libcni.RuntimeConf{ContainerID: res.ID, NetNS: fmt.Sprintf("/proc/%d/ns/net", in.Container.State.Pid), IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "berth-bench"}, {"K8S_POD_NAME", cfg.Metadata.Name}}}
	if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
		undo()
		return "", nil, err
	}
	return res.ID, func() {
		_ = cni.DelNetworkList(context.Background(), list, rt)
		undo()
	}, nil
}

// rawTypeLabel holds a raw container's kind (podsandbox, container) in
// place of Berth's label.
const rawTypeLabel = "berth.bench/raw-type"

// unlabel moves Berth's kind label of a raw container to rawTypeLabel:
// Berth watches Docker's events for containers carrying its label, and
// inspecting the raw fleet's would load the daemon during Berth's
// figures with work no Berth on a node does. The label count stays.
func unlabel(spec *dockerspec.CreateSpec) {
	spec.Config.Labels[rawTypeLabel] = spec.Config.Labels[dockerspec.LabelType]
	delete(spec.Config.Labels, dockerspec.LabelType)
}

// BenchmarkRunPodSandbox alternates a raw sandbox and a Berth sandbox and
// reports both latencies and Berth's overhead.
func BenchmarkRunPodSandbox(b *testing.B) {
	ctx := context.Background()
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--log-level", "info")})
	dc, err := framework.DockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	list, _, err := network.LoadConfig(n.ConfDir, []string{framework.CNIBinDir})
	if err != nil {
		b.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{framework.CNIBinDir}, b.TempDir(), nil)

	// Warm up: the pause image is built on the first pod.
	id, err := br.Runtime.RunPodSandbox(ctx, podConfig("warm", 0), "")
	if err != nil {
		b.Fatal(err)
	}
	_ = br.Runtime.StopPodSandbox(ctx, id)
	_ = br.Runtime.RemovePodSandbox(ctx, id)

	var raw, berth []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, undo, err := rawSandbox(ctx, dc, cni, list, podConfig("raw", i))
		raw = append(raw, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		id, err := br.Runtime.RunPodSandbox(ctx, podConfig("berth", i), "")
		berth = append(berth, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		undo()
		_ = br.Runtime.StopPodSandbox(ctx, id)
		_ = br.Runtime.RemovePodSandbox(ctx, id)
		b.StartTimer()
	}
	report(b, berth, raw)
}

// report adds the medians of both series and Berth's overhead over raw
// Docker to the benchmark's output.
func report(b *testing.B, berth, raw []time.Duration) {
	mb, mr := median(berth), median(raw)
	b.ReportMetric(float64(mb.Microseconds())/1000, "berth-ms")
	b.ReportMetric(float64(mr.Microseconds())/1000, "docker-ms")
	b.ReportMetric(100*(float64(mb)/float64(mr)-1), "overhead-%")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkSandboxIndex100 measures ListPodSandbox and PodSandboxStatus
// with 100 pods, against listing them from Docker (a label-filtered
// container list, the call a shim without an index makes).
func BenchmarkSandboxIndex100(b *testing.B) {
	ctx := context.Background()
	n := framework.NewCNINetwork(b, framework.CNIOptions{})
	br := framework.StartBerth(b, framework.Options{Args: append(n.Args(), "--log-level", "info")})
	dc, err := framework.DockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	const pods = 100
	ids := make([]string, pods)
	sem := make(chan struct{}, 8)
	errs := make(chan error, pods)
	for i := 0; i < pods; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			id, err := br.Runtime.RunPodSandbox(ctx, podConfig("index", i), "")
			ids[i] = id
			errs <- err
		}(i)
	}
	for i := 0; i < pods; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, id := range ids {
			_ = br.Runtime.StopPodSandbox(ctx, id)
			_ = br.Runtime.RemovePodSandbox(ctx, id)
		}
	})
	filter := &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"berth-bench": "1"}}
	none := &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"berth-bench": "none"}}

	b.Run("ListPodSandbox", func(b *testing.B) {
		var berth, raw, floor []time.Duration
		var cpu time.Duration
		// Each Berth call follows a Docker list, so both meet Berth equally idle.
		dockerList := func() {
			start := time.Now()
			res, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: client.Filters{}.Add("label", "io.kubernetes.docker.type=podsandbox", "berth-bench=1")})
			raw = append(raw, time.Since(start))
			if err != nil || len(res.Items) < pods {
				b.Fatalf("docker ps: %d, %v", len(res.Items), err)
			}
		}
		for i := 0; i < b.N; i++ {
			before := cpuTime(b, br.Pid())
			start := time.Now()
			items, err := br.Runtime.ListPodSandbox(ctx, filter)
			berth = append(berth, time.Since(start))
			cpu += cpuTime(b, br.Pid()) - before
			if err != nil || len(items) != pods {
				b.Fatalf("ListPodSandbox: %d items, %v", len(items), err)
			}
			dockerList()
			start = time.Now()
			if items, err := br.Runtime.ListPodSandbox(ctx, none); err != nil || len(items) != 0 {
				b.Fatalf("ListPodSandbox matching nothing: %d items, %v", len(items), err)
			}
			floor = append(floor, time.Since(start))
			dockerList()
		}
		report(b, berth, raw)
		reportCPU(b, cpu, b.N)
		reportFloor(b, floor)
		items, err := br.Runtime.ListPodSandbox(ctx, filter)
		if err != nil {
			b.Fatal(err)
		}
		reportDecode(b, &runtimeapi.ListPodSandboxResponse{Items: items})
	})
	b.Run("PodSandboxStatus", func(b *testing.B) {
		var berth, raw []time.Duration
		for i := 0; i < b.N; i++ {
			id := ids[i%pods]
			start := time.Now()
			if _, err := br.Runtime.PodSandboxStatus(ctx, id, false); err != nil {
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
