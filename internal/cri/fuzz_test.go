package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/cri/checkpoints"
	"github.com/berth-cri/berth/internal/cri/images"
	"github.com/berth-cri/berth/internal/cri/stats"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/streaming"
)

// FuzzRequests decodes arbitrary bytes as one of the CRI requests (the
// first byte picks which) and sends it through the Server's handler, as
// the gRPC server would, with an index holding one ready pod and one
// running container (the seeds name them, so mutations reach past the id
// lookups) and a Docker, CNI and streaming back end that is down: whatever
// a handler does before it needs them — validation, id resolution,
// translation — runs on the fuzzed request. It must never panic; it may
// succeed, or fail with a client-error code naming the field it refuses,
// or with Unavailable (the back end is down) or DeadlineExceeded.
// internal/dockerspec's targets fuzz RunPodSandbox's and CreateContainer's
// translation in depth.
//
// CheckpointContainer, CheckpointPod, RestorePod and CreateContainer act on
// host paths the request names (they write archives, empty a directory on
// failure, read checkpoints, create missing mount sources): their absolute
// paths are rebased into a fresh directory per input, which holds what
// their seeds name (an archive directory, an empty output directory, a pod
// checkpoint), so the fuzzer exercises them without touching the host's
// files. The Docker behind them is down, so no container is paused,
// dumped or made.
//
// NOTE: an input's first byte picks rpcs[which % len(rpcs)]. New methods go
// at the end of fuzzRPCs, and the committed corpus (testdata/fuzz) must
// then be rewritten to which % (the old length), or its inputs land on
// other methods.
func FuzzRequests(f *testing.F) {
	rpcs := fuzzRPCs()
	for i, r := range rpcs {
		for _, seed := range r.seeds {
			b, err := proto.Marshal(seed)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		r := rpcs[int(which)%len(rpcs)]
		req := r.seeds[0].ProtoReflect().New().Interface()
		if proto.Unmarshal(data, req) != nil {
			return
		}
		if r.confine != nil {
			r.confine(req, fuzzHostDir(t))
		}
		s := fuzzService(t, dir)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := r.call(s, ctx, req)
		checkHandlerError(t, r.name, err)
	})
}

// refusalField is how a refusal starts: the request field it is about.
var refusalField = regexp.MustCompile(`^[a-z_]+(\.[A-Za-z_]+|\[\d+\]|\[[^\]]*\])*[: ]`)

func checkHandlerError(t *testing.T, rpc string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	switch code := errdefs.Code(err); code {
	case codes.InvalidArgument:
		if !refusalField.MatchString(err.Error()) {
			t.Fatalf("%s: a refusal that does not name the field: %q", rpc, err.Error())
		}
	case codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange,
		codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Unimplemented:
	default:
		t.Fatalf("%s: an error with code %v: %v", rpc, code, err)
	}
}

// fuzzRPC is one unary CRI method: how to call it, and requests to start
// mutating from.
type fuzzRPC struct {
	name  string
	seeds []proto.Message
	call  func(s *Server, ctx context.Context, req proto.Message) error
	// confine, for methods that act on host paths, rebases the request's
	// paths into root (fuzzHostDir).
	confine func(req proto.Message, root string)
}

// confined is r with its request's host paths rebased by confine.
func confined[Req proto.Message](r fuzzRPC, confine func(req Req, root string)) fuzzRPC {
	r.confine = func(req proto.Message, root string) { confine(req.(Req), root) }
	return r
}

// underRoot rebases an absolute path into root (a relative one stays, for
// the handler to refuse): Clean first, so no "..", however many, climbs
// out of root.
func underRoot(root, p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, filepath.Clean(p))
}

func TestUnderRootNeverClimbsOut(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/archives/c.tar", "/fuzz/archives/c.tar"},
		{"/", "/fuzz"},
		{"/../../etc/passwd", "/fuzz/etc/passwd"},
		{"/out/../../../root", "/fuzz/root"},
		{"relative/../..", "relative/../.."},
		{"", ""},
	} {
		if got := underRoot("/fuzz", tc.in); got != tc.want {
			t.Errorf("underRoot(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func confineMounts(root string, mounts []*runtimeapi.Mount) {
	for _, m := range mounts {
		m.HostPath = underRoot(root, m.GetHostPath())
	}
}

// fuzzHostDir is a fresh directory standing in for the host's filesystem:
// it holds the paths the checkpoint seeds name.
func fuzzHostDir(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"archives", "out", "checkpoint/" + archive.ContainersDirectory} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := json.Marshal(archive.PodOptions{Version: 1, Containers: []string{"c"}, ProcessState: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "checkpoint", archive.PodOptionsFile), opts, 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

func rpc[Req proto.Message, Resp any](name string, fn func(*Server, context.Context, Req) (Resp, error), seeds ...Req) fuzzRPC {
	r := fuzzRPC{name: name, call: func(s *Server, ctx context.Context, req proto.Message) error {
		_, err := fn(s, ctx, req.(Req))
		return err
	}}
	for _, sd := range seeds {
		r.seeds = append(r.seeds, sd)
	}
	return r
}

const (
	fuzzPod       = "5a5d1b0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b"
	fuzzContainer = "c0ffee0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b"
)

func fuzzRPCs() []fuzzRPC {
	pod := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		LogDirectory: "/var/log/pods/ns_p_u",
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/podu"},
	}
	ctr := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox:latest"},
		Command:  []string{"sleep", "1"},
		LogPath:  "c/0.log",
		Mounts:   []*runtimeapi.Mount{{HostPath: "/tmp/x", ContainerPath: "/x"}},
	}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0", Unified: map[string]string{"memory.high": "max"}}
	image := &runtimeapi.ImageSpec{Image: "registry.example/team/app@sha256:" + fuzzPod}
	// restored is a pod not in the index, so RestorePod gets past its
	// "exists already" check.
	restored := proto.Clone(pod).(*runtimeapi.PodSandboxConfig)
	restored.Metadata.Name = "q"
	return []fuzzRPC{
		rpc("Version", (*Server).Version, &runtimeapi.VersionRequest{Version: "v1"}),
		rpc("Status", (*Server).Status, &runtimeapi.StatusRequest{Verbose: true}),
		rpc("RuntimeConfig", (*Server).RuntimeConfig, &runtimeapi.RuntimeConfigRequest{}),
		rpc("UpdateRuntimeConfig", (*Server).UpdateRuntimeConfig, &runtimeapi.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.0.0.0/24,fd00::/64"}}}),
		rpc("RunPodSandbox", (*Server).RunPodSandbox, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: "runc"}),
		rpc("StopPodSandbox", (*Server).StopPodSandbox, &runtimeapi.StopPodSandboxRequest{PodSandboxId: fuzzPod}),
		rpc("RemovePodSandbox", (*Server).RemovePodSandbox, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: fuzzPod[:12]}),
		rpc("PodSandboxStatus", (*Server).PodSandboxStatus, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: fuzzPod, Verbose: true}),
		rpc("ListPodSandbox", (*Server).ListPodSandbox, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			Id: fuzzPod[:5], State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}, LabelSelector: map[string]string{"app": "x"}}}),
		rpc("UpdatePodSandboxResources", (*Server).UpdatePodSandboxResources, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: fuzzPod, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2}}),
		confined(rpc("CreateContainer", (*Server).CreateContainer, &runtimeapi.CreateContainerRequest{PodSandboxId: fuzzPod, Config: ctr, SandboxConfig: pod}),
			func(req *runtimeapi.CreateContainerRequest, root string) {
				confineMounts(root, req.GetConfig().GetMounts())
			}),
		rpc("StartContainer", (*Server).StartContainer, &runtimeapi.StartContainerRequest{ContainerId: fuzzContainer}),
		rpc("StopContainer", (*Server).StopContainer, &runtimeapi.StopContainerRequest{ContainerId: fuzzContainer, Timeout: 3}),
		rpc("RemoveContainer", (*Server).RemoveContainer, &runtimeapi.RemoveContainerRequest{ContainerId: fuzzContainer[:12]}),
		rpc("ListContainers", (*Server).ListContainers, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			Id: fuzzContainer[:4], PodSandboxId: fuzzPod, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}}),
		rpc("ContainerStatus", (*Server).ContainerStatus, &runtimeapi.ContainerStatusRequest{ContainerId: fuzzContainer, Verbose: true}),
		rpc("UpdateContainerResources", (*Server).UpdateContainerResources, &runtimeapi.UpdateContainerResourcesRequest{
			ContainerId: fuzzContainer, Linux: res, Annotations: map[string]string{"a": "b"}}),
		rpc("ReopenContainerLog", (*Server).ReopenContainerLog, &runtimeapi.ReopenContainerLogRequest{ContainerId: fuzzContainer}),
		rpc("ExecSync", (*Server).ExecSync, &runtimeapi.ExecSyncRequest{ContainerId: fuzzContainer, Cmd: []string{"true"}, Timeout: 1}),
		rpc("Exec", (*Server).Exec, &runtimeapi.ExecRequest{ContainerId: fuzzContainer, Cmd: []string{"sh"}, Stdin: true, Stdout: true, Tty: true}),
		rpc("Attach", (*Server).Attach, &runtimeapi.AttachRequest{ContainerId: fuzzContainer, Stdout: true, Stderr: true}),
		rpc("PortForward", (*Server).PortForward, &runtimeapi.PortForwardRequest{PodSandboxId: fuzzPod, Port: []int32{80, 443}}),
		rpc("ContainerStats", (*Server).ContainerStats, &runtimeapi.ContainerStatsRequest{ContainerId: fuzzContainer}),
		rpc("ListContainerStats", (*Server).ListContainerStats, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{
			Id: fuzzContainer, PodSandboxId: fuzzPod[:3], LabelSelector: map[string]string{"a": "b"}}}),
		rpc("PodSandboxStats", (*Server).PodSandboxStats, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: fuzzPod}),
		rpc("ListPodSandboxStats", (*Server).ListPodSandboxStats, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: fuzzPod}}),
		rpc("ListMetricDescriptors", (*Server).ListMetricDescriptors, &runtimeapi.ListMetricDescriptorsRequest{}),
		rpc("ListPodSandboxMetrics", (*Server).ListPodSandboxMetrics, &runtimeapi.ListPodSandboxMetricsRequest{}),
		rpc("ListImages", (*Server).ListImages, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: image}}),
		rpc("ImageStatus", (*Server).ImageStatus, &runtimeapi.ImageStatusRequest{Image: image, Verbose: true}),
		rpc("PullImage", (*Server).PullImage, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"},
			Auth: &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "registry.example"}, SandboxConfig: pod}),
		rpc("RemoveImage", (*Server).RemoveImage, &runtimeapi.RemoveImageRequest{Image: image}),
		rpc("ImageFsInfo", (*Server).ImageFsInfo, &runtimeapi.ImageFsInfoRequest{}),
		confined(rpc("CheckpointContainer", (*Server).CheckpointContainer,
			&runtimeapi.CheckpointContainerRequest{ContainerId: fuzzContainer, Location: "/archives/c.tar", Timeout: 5}),
			func(req *runtimeapi.CheckpointContainerRequest, root string) {
				req.Location = underRoot(root, req.GetLocation())
			}),
		confined(rpc("CheckpointPod", (*Server).CheckpointPod,
			&runtimeapi.CheckpointPodRequest{PodSandboxId: fuzzPod, OutputPath: "/out", ContainerIds: []string{fuzzContainer}},
			&runtimeapi.CheckpointPodRequest{PodSandboxId: fuzzPod[:12], OutputPath: "/out", ContainerIds: []string{fuzzContainer[:6]},
				Options: map[string]string{"process-state": "omit"}}),
			func(req *runtimeapi.CheckpointPodRequest, root string) {
				req.OutputPath = underRoot(root, req.GetOutputPath())
			}),
		confined(rpc("RestorePod", (*Server).RestorePod,
			&runtimeapi.RestorePodRequest{Config: restored, ContainerConfigs: []*runtimeapi.ContainerConfig{ctr}, CheckpointPath: "/checkpoint"},
			&runtimeapi.RestorePodRequest{Config: restored, ContainerConfigs: []*runtimeapi.ContainerConfig{ctr}, CheckpointPath: "/checkpoint",
				RuntimeHandler: "runc", Options: map[string]string{"process-state": "omit"}}),
			func(req *runtimeapi.RestorePodRequest, root string) {
				req.CheckpointPath = underRoot(root, req.GetCheckpointPath())
				for _, c := range req.GetContainerConfigs() {
					confineMounts(root, c.GetMounts())
				}
			}),
	}
}

// fuzzService is a Server whose index holds one ready pod (owned, on a
// CNI network, with a checkpoint-less record) and one running container in
// it, and whose back ends are down.
func fuzzService(t testing.TB, dir string) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.RootDir = dir
	cps, err := checkpoint.Open(dir + "/sandboxes")
	if err != nil {
		t.Fatal(err)
	}
	st := store.New()
	st.PutSandbox(&store.Sandbox{
		ID: fuzzPod, Name: "k8s_POD_p_ns_u_0",
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		Labels:      map[string]string{"app": "x"},
		Annotations: map[string]string{},
		Namespaces:  &runtimeapi.NamespaceOption{},
		Running:     true, Pid: 1 << 30, NetworkReady: true, IPs: []string{"10.0.0.2"}, Owned: true,
		CgroupParent: "/kubepods/podu",
	})
	st.PutContainer(&store.Container{
		ID: fuzzContainer, Name: "k8s_c_p_ns_u_0", SandboxID: fuzzPod,
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Labels:   map[string]string{"a": "b"}, Annotations: map[string]string{},
		Image: &runtimeapi.ImageSpec{Image: "busybox:latest"}, ImageID: "sha256:" + fuzzPod,
		LogPath: "/var/log/pods/ns_p_u/c/0.log",
		State:   runtimeapi.ContainerState_CONTAINER_RUNNING, StartedAt: 1, Pid: 1 << 30, Owned: true,
	})
	down := downBackend{dockerRoot: dir}
	layers := images.NewLayerSampler(down)
	imageService := images.New(images.Deps{Config: cfg, Daemon: down, Docker: down, Layers: layers})
	runtime := New(Deps{
		Config: cfg, Daemon: down, Docker: down, Network: down, Checkpoints: cps, Store: st,
		Logs: down, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Images: down, SandboxImages: imageService, Streams: down, Exec: down,
	})
	return &Server{
		Service:           runtime,
		ImageService:      imageService,
		StatsService:      stats.New(stats.Deps{Store: st, Daemon: down, Layers: layers}),
		CheckpointService: checkpoints.New(checkpoints.Deps{Config: cfg, Docker: down, Runtime: runtime.ForCheckpoints(), Store: st}),
	}
}

// downBackend is Docker, CNI, the log forwarder and the streaming server,
// each answering Unavailable: the handlers get as far as they can without
// them.
type downBackend struct {
	// dockerRoot is the data root the daemon reports.
	dockerRoot string
}

var errDown = fmt.Errorf("fuzzing: the back end is down: %w", errdefs.ErrUnavailable)

func (d downBackend) Health() docker.Health {
	// Experimental, so the checkpoint RPCs get past "no checkpoint API"
	// to the calls that find Docker down.
	return docker.Health{Ready: true, Daemon: docker.DaemonInfo{
		Version: "20.10.24", APIVersion: "1.41", CgroupDriver: "cgroupfs", Runtimes: []string{"runc"},
		RootDir: d.dockerRoot, StorageDriver: "overlay2", Experimental: true,
	}}
}
func (d downBackend) Probe(context.Context) docker.Health { return d.Health() }
func (downBackend) CreateContainer(context.Context, string, *container.Config, *container.HostConfig) (string, error) {
	return "", errDown
}
func (downBackend) StartContainer(context.Context, string) error { return errDown }
func (downBackend) StopContainer(context.Context, string, time.Duration, string) error {
	return errDown
}
func (downBackend) RemoveContainer(context.Context, string) error { return errDown }
func (downBackend) InspectContainer(context.Context, string) (container.InspectResponse, error) {
	return container.InspectResponse{}, errDown
}
func (downBackend) ListContainers(context.Context, ...string) ([]container.Summary, error) {
	return nil, errDown
}
func (downBackend) UpdateContainerResources(context.Context, string, *container.Resources) error {
	return errDown
}
func (downBackend) ReadFile(context.Context, string, string, int64) ([]byte, error) {
	return nil, errDown
}
func (downBackend) CDIDevices(context.Context) ([]string, error) { return nil, errDown }
func (downBackend) StatPath(context.Context, string, string) (container.PathStat, error) {
	return container.PathStat{}, errDown
}
func (downBackend) CheckpointContainer(context.Context, string, string, string) error {
	return errDown
}
func (downBackend) StartContainerFromCheckpoint(context.Context, string, string) error {
	return errDown
}
func (downBackend) ContainerChanges(context.Context, string) ([]container.FilesystemChange, error) {
	return nil, errDown
}
func (downBackend) CopyFromContainer(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errDown
}
func (downBackend) CopyToContainer(context.Context, string, string, io.Reader) error { return errDown }
func (downBackend) PauseContainer(context.Context, string) error                     { return errDown }
func (downBackend) UnpauseContainer(context.Context, string) error                   { return errDown }
func (downBackend) ContainerEvents(context.Context, time.Time, ...string) (<-chan events.Message, <-chan error) {
	errs := make(chan error, 1)
	errs <- errDown
	return nil, errs
}
func (downBackend) ImageID(context.Context, string) (string, error)       { return "", errDown }
func (downBackend) ImageLayers(context.Context, string) ([]string, error) { return nil, errDown }
func (downBackend) ImportImage(context.Context, io.Reader, string, []string) error {
	return errDown
}

func (downBackend) Ready() (bool, string) { return true, "" }
func (downBackend) UsesCNI() bool         { return true }
func (downBackend) Prepare(network.PodNetwork) (*network.Attachment, error) {
	return nil, errDown
}
func (downBackend) Add(context.Context, string, *network.Attachment) error { return errDown }
func (downBackend) Del(context.Context, string, *network.Attachment, string) error {
	return errDown
}
func (downBackend) Check(context.Context, string, *network.Attachment) error { return errDown }
func (downBackend) CachedIPs(string) []string                                { return nil }
func (downBackend) SetPodCIDR(string) bool                                   { return false }
func (downBackend) PodCIDR() string                                          { return "" }

func (downBackend) PullImage(context.Context, string, docker.PullOptions) error { return errDown }
func (downBackend) InspectImage(context.Context, string) (image.InspectResponse, error) {
	return image.InspectResponse{}, errDown
}
func (downBackend) ListImages(context.Context) ([]image.Summary, error) { return nil, errDown }
func (downBackend) ImageHistory(context.Context, string) ([]image.HistoryResponseItem, error) {
	return nil, errDown
}
func (downBackend) RemoveImage(context.Context, string) error { return errDown }
func (downBackend) ContainersUsingImage(context.Context, string) ([]string, error) {
	return nil, errDown
}
func (downBackend) ListLayerContainers(context.Context) ([]docker.LayerContainer, error) {
	return nil, errDown
}
func (downBackend) WritableLayerDir(context.Context, string) (string, error) { return "", errDown }
func (downBackend) WritableLayerSize(context.Context, string) (int64, error) { return 0, errDown }

func (downBackend) Follow(string, string, string, func() bool) error { return errDown }
func (downBackend) Exited(string)                                    {}
func (downBackend) Reopen(string) error                              { return errDown }
func (downBackend) Forget(string)                                    {}

func (downBackend) GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, errDown
}
func (downBackend) GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, errDown
}
func (downBackend) GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, errDown
}
func (downBackend) RunExec(context.Context, string, streaming.ExecOptions) (streaming.ExecResult, error) {
	return streaming.ExecResult{}, errDown
}

// TestServerRoutesEveryRPC: every unary method reaches the service of its
// concern through Server, none the Unimplemented fallback (which an RPC
// missing from one of Server's interfaces would silently fall to).
func TestServerRoutesEveryRPC(t *testing.T) {
	dir := t.TempDir()
	for _, r := range fuzzRPCs() {
		t.Run(r.name, func(t *testing.T) {
			req := proto.Clone(r.seeds[0])
			if r.confine != nil {
				r.confine(req, fuzzHostDir(t))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := r.call(fuzzService(t, dir), ctx, req); errdefs.Code(err) == codes.Unimplemented {
				t.Errorf("%s: %v", r.name, err)
			}
		})
	}
}
