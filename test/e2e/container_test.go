package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// containerConfig returns a busybox container running script with sh -c.
func containerConfig(name, script string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: framework.TestImage, UserSpecifiedImage: "busybox"},
		Command:  []string{"sh", "-c"},
		Args:     []string{script},
		Labels:   map[string]string{"berth-e2e-run": runID},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// pod is a running sandbox of a test, with its config.
type pod struct {
	b   *framework.Berth
	id  string
	cfg *runtimeapi.PodSandboxConfig
}

func newPod(t *testing.T, b *framework.Berth, name string) *pod {
	t.Helper()
	cfg := podConfig(name)
	cfg.LogDirectory = t.TempDir()
	return &pod{b: b, id: runPod(t, b, cfg), cfg: cfg}
}

// create creates a container in the pod and removes it when the test ends.
func (p *pod) create(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := p.b.Runtime.CreateContainer(context.Background(), p.id, cfg, p.cfg)
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	t.Cleanup(func() {
		if err := p.b.Runtime.RemoveContainer(context.Background(), id); err != nil {
			t.Errorf("cleanup: RemoveContainer(%s): %v", id, err)
		}
	})
	return id
}

// run creates and starts a container.
func (p *pod) run(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := p.create(t, cfg)
	if err := p.b.Runtime.StartContainer(context.Background(), id); err != nil {
		t.Fatalf("StartContainer(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	return id
}

func containerStatus(t *testing.T, b *framework.Berth, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	st, err := b.Runtime.ContainerStatus(context.Background(), id, false)
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return st.GetStatus()
}

// waitExited waits for a container to exit and returns its status.
func waitExited(t *testing.T, b *framework.Berth, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	eventually(t, 60*time.Second, func() error {
		st = containerStatus(t, b, id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			return fmt.Errorf("state %v", st.State)
		}
		return nil
	})
	return st
}

// dockerExec runs a command in a running container through Docker (the
// tests' own window into the container; Berth's exec is tested on its own).
func dockerExec(t *testing.T, id string, args ...string) string {
	t.Helper()
	out, err := docker(t, append([]string{"exec", id}, args...)...)
	if err != nil {
		t.Fatalf("docker exec %v: %v: %s", args, err, out)
	}
	return out
}

func TestContainerLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ctr-life")
	cfg := containerConfig("main", "echo started; exec sleep 3600")
	cfg.Labels["tier"] = "x"
	cfg.Annotations = map[string]string{"io.kubernetes.container.hash": "abc", "note": "✓ exact"}
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello world")}}
	cfg.WorkingDir = "/tmp"
	id := p.create(t, cfg)

	st := containerStatus(t, berth, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt == 0 || st.StartedAt != 0 {
		t.Errorf("after create: %v created %d started %d", st.State, st.CreatedAt, st.StartedAt)
	}
	if !equalMaps(st.Labels, cfg.Labels) || !equalMaps(st.Annotations, cfg.Annotations) {
		t.Errorf("labels/annotations: %v %v", st.Labels, st.Annotations)
	}
	if st.Image.GetImage() != framework.TestImage || st.Image.GetUserSpecifiedImage() != "busybox" || !strings.HasPrefix(st.ImageRef, "sha256:") || st.ImageId == "" {
		t.Errorf("image %v ref %q id %q", st.Image, st.ImageRef, st.ImageId)
	}
	if st.LogPath != p.cfg.LogDirectory+"/main.log" {
		t.Errorf("log path %q", st.LogPath)
	}
	name, _ := docker(t, "inspect", "-f", "{{.Name}}", id)
	if name != "/k8s_main_ctr-life_berth-e2e_"+p.cfg.Metadata.Uid+"_0" {
		t.Errorf("docker name %q", name)
	}

	if err := berth.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	st = containerStatus(t, berth, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 {
		t.Errorf("after start: %v started %d", st.State, st.StartedAt)
	}
	if out := dockerExec(t, id, "sh", "-c", "echo $GREETING; pwd; hostname"); out != "hello world\n/tmp\nctr-life" {
		t.Errorf("env/workdir/hostname in the container: %q", out)
	}
	if out, _ := docker(t, "logs", id); out != "started" {
		t.Errorf("docker logs = %q: docker logs must keep working", out)
	}

	items, err := berth.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: p.id})
	if err != nil || len(items) != 1 || items[0].Id != id || items[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ListContainers = %v, %v", items, err)
	}
	// The streaming form returns the same.
	stream, err := berth.RuntimeClient.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for _, resp := range recvAll(t, stream.Recv) {
		for _, c := range resp.GetContainers() {
			streamed = append(streamed, c.GetId())
		}
	}
	if len(streamed) != 1 || streamed[0] != id {
		t.Errorf("StreamContainers gave %v, want [%s]", streamed, id)
	}

	if err := berth.Runtime.StopContainer(ctx, id, 2); err != nil {
		t.Fatal(err)
	}
	st = containerStatus(t, berth, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.FinishedAt == 0 || st.Reason == "" {
		t.Errorf("after stop: %v finished %d reason %q exit %d", st.State, st.FinishedAt, st.Reason, st.ExitCode)
	}
	if err := berth.Runtime.StopContainer(ctx, id, 2); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := berth.Runtime.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := berth.Runtime.ContainerStatus(ctx, id, false); codeOf(err) != "NotFound" {
		t.Errorf("status after remove: %v", err)
	}
	for _, call := range []func() error{
		func() error { return berth.Runtime.StopContainer(ctx, id, 1) },
		func() error { return berth.Runtime.RemoveContainer(ctx, id) },
	} {
		if err := call(); err != nil {
			t.Errorf("stop/remove of a removed container: %v", err)
		}
	}
}

// TestContainerStatusImageByID: kubelet creates a container by image id
// and names the pod's image in user_specified_image; ContainerStatus must
// name that image, which kubelet shows as the pod's
// containerStatuses[].image (the node conformance specs "Containers
// Lifecycle … the image is updated" compare it with the pod spec's image).
func TestContainerStatusImageByID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	img, err := berth.Images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: framework.TestImage}, false)
	if err != nil || img.GetImage() == nil {
		t.Fatalf("ImageStatus(%s): %v", framework.TestImage, err)
	}
	imageID := img.GetImage().GetId() // what kubelet passes: PullImage's image_ref
	p := newPod(t, berth, "ctr-imgid")
	cfg := containerConfig("main", "sleep 3600")
	cfg.Image = &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: framework.TestImage}
	id := p.create(t, cfg)
	st := containerStatus(t, berth, id)
	if st.GetImage().GetImage() != framework.TestImage || st.GetImage().GetUserSpecifiedImage() != framework.TestImage || st.GetImageRef() != imageID {
		t.Errorf("status image %v ref %q, want image %q ref %q", st.GetImage(), st.GetImageRef(), framework.TestImage, imageID)
	}
}

func TestContainerStopSignal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ctr-stopsig")
	// The shell exits with 7 on SIGUSR1 and ignores SIGTERM, so only the
	// configured stop signal ends it before the timeout's SIGKILL.
	cfg := containerConfig("sig", "trap 'exit 7' USR1; trap '' TERM; echo ready; while :; do sleep 1 & wait; done")
	cfg.StopSignal = runtimeapi.Signal_SIGNAL_SIGUSR1
	id := p.run(t, cfg)
	if got := containerStatus(t, berth, id).GetStopSignal(); got != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("status stop_signal = %v, want SIGUSR1", got)
	}
	eventually(t, 30*time.Second, func() error {
		if out, _ := docker(t, "logs", id); out != "ready" {
			return errorf("the trap is not set yet (logs %q)", out)
		}
		return nil
	})
	if err := berth.Runtime.StopContainer(ctx, id, 60); err != nil {
		t.Fatal(err)
	}
	if st := containerStatus(t, berth, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Errorf("after StopContainer: %v exit %d, want EXITED exit 7 (SIGUSR1's trap)", st.GetState(), st.GetExitCode())
	}
}

func TestContainerExitReasons(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "ctr-exit")
	ok := p.run(t, containerConfig("ok", "exit 0"))
	fail := p.run(t, containerConfig("fail", "exit 3"))
	if st := waitExited(t, berth, ok); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("exit 0: code %d reason %q", st.ExitCode, st.Reason)
	}
	if st := waitExited(t, berth, fail); st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("exit 3: code %d reason %q", st.ExitCode, st.Reason)
	}
	missing := containerConfig("missing", "")
	missing.Command = []string{"/no/such/binary"}
	missing.Args = nil
	id := p.create(t, missing)
	if err := berth.Runtime.StartContainer(context.Background(), id); err == nil {
		t.Errorf("starting a missing binary succeeded")
	}
	st := containerStatus(t, berth, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "StartError" || st.Message == "" || st.ExitCode == 0 {
		t.Errorf("missing binary: %v reason %q message %q exit %d", st.State, st.Reason, st.Message, st.ExitCode)
	}
}

func TestContainerValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ctr-invalid")
	for _, tc := range []struct {
		name  string
		mod   func(*runtimeapi.CreateContainerRequest)
		code  codes.Code
		field string
	}{
		{"no sandbox id", func(r *runtimeapi.CreateContainerRequest) { r.PodSandboxId = "" }, codes.InvalidArgument, "pod_sandbox_id"},
		{"unknown sandbox", func(r *runtimeapi.CreateContainerRequest) { r.PodSandboxId = "nope-nope" }, codes.NotFound, "pod_sandbox_id"},
		{"no config", func(r *runtimeapi.CreateContainerRequest) { r.Config = nil }, codes.InvalidArgument, "config"},
		{"no metadata", func(r *runtimeapi.CreateContainerRequest) { r.Config.Metadata = nil }, codes.InvalidArgument, "config.metadata"},
		{"no name", func(r *runtimeapi.CreateContainerRequest) { r.Config.Metadata.Name = "" }, codes.InvalidArgument, "config.metadata.name"},
		{"no image", func(r *runtimeapi.CreateContainerRequest) { r.Config.Image = nil }, codes.InvalidArgument, "config.image.image"},
		{"relative mount", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/tmp"}}
		}, codes.InvalidArgument, "config.mounts[0].container_path"},
		{"ambient caps", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}}
		}, codes.FailedPrecondition, "add_ambient_capabilities"},
		{"own user namespace", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}}
		}, codes.FailedPrecondition, "userns_options.mode: CONTAINER"},
		{"CDI device name", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "gpu0"}}
		}, codes.InvalidArgument, "config.CDI_devices[0].name"},
		{"missing seccomp profile", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/no/such/profile.json"}}
		}, codes.InvalidArgument, "seccomp.localhost_ref"},
		{"apparmor without apparmor", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}}
		}, codes.FailedPrecondition, "apparmor"},
		{"unknown image", func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Image = &runtimeapi.ImageSpec{Image: "berth-test/no-such-image:1"}
		}, codes.NotFound, "no-such-image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := containerConfig("invalid", "true")
			req := &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg}
			tc.mod(req)
			_, err := berth.RuntimeClient.CreateContainer(ctx, req)
			wantCode(t, err, tc.code, tc.field)
		})
	}
	if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_invalid_ctr-invalid"); out != "" {
		t.Errorf("refused creates left containers: %s", out)
	}
	// A stopped pod takes no new containers.
	if err := berth.Runtime.StopPodSandbox(ctx, p.id); err != nil {
		t.Fatal(err)
	}
	_, err := berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: containerConfig("late", "true"), SandboxConfig: p.cfg})
	wantCode(t, err, codes.FailedPrecondition, "not ready")
	for _, id := range []string{"", "nope-nope"} {
		_, err := berth.RuntimeClient.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if id == "" {
			wantCode(t, err, codes.InvalidArgument, "container_id")
		} else {
			wantCode(t, err, codes.NotFound, id)
		}
	}
}

func TestConcurrentCreateWithTheSameNameMakesOneContainer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ctr-dup")
	cfg := containerConfig("same", "sleep 3600")
	ids := make([]string, 6)
	errs := make([]error, 6)
	parallel(6, func(i int) { ids[i], errs[i] = berth.Runtime.CreateContainer(ctx, p.id, cfg, p.cfg) })
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent creates returned %v", ids)
		}
	}
	t.Cleanup(func() { _ = berth.Runtime.RemoveContainer(ctx, ids[0]) })
	_, err := berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	wantCode(t, err, codes.AlreadyExists, "config.metadata")
	if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_same_ctr-dup"); len(strings.Fields(out)) != 1 {
		t.Errorf("containers named like it: %q", out)
	}
}

func TestRemovePodSandboxRemovesItsContainers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ctr-podrm")
	id, err := berth.Runtime.CreateContainer(ctx, p.id, containerConfig("c", "sleep 3600"), p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := berth.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := berth.Runtime.StopPodSandbox(ctx, p.id); err != nil {
		t.Fatal(err)
	}
	if st := containerStatus(t, berth, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container after StopPodSandbox: %v", st.State)
	}
	if err := berth.Runtime.RemovePodSandbox(ctx, p.id); err != nil {
		t.Fatal(err)
	}
	if out, err := docker(t, "inspect", id); err == nil {
		t.Errorf("container left after RemovePodSandbox: %s", out)
	}
	if _, err := berth.Runtime.ContainerStatus(ctx, id, false); codeOf(err) != "NotFound" {
		t.Errorf("status: %v", err)
	}
}

func TestBerthRestartWhileContainersRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, _ := privateBerth(t, framework.CNIOptions{})
	p := newPod(t, b, "ctr-restart")
	running := p.run(t, containerConfig("running", "sleep 3600"))
	exited := p.run(t, containerConfig("exited", "exit 7"))
	created := p.create(t, containerConfig("created", "sleep 1"))
	waitExited(t, b, exited)
	snapshot := func() map[string]string {
		out := map[string]string{}
		items, err := b.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: p.id})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range items {
			st := containerStatus(t, b, c.Id)
			st.User = nil // read from /proc while running: same, but compared below
			out[c.Id] = c.String() + "|" + st.String()
		}
		return out
	}
	before := snapshot()
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	if len(after) != 3 {
		t.Fatalf("after restart %d containers, want 3", len(after))
	}
	for id, want := range before {
		if after[id] != want {
			t.Errorf("container %s changed across a restart:\nbefore %s\nafter  %s", id, want, after[id])
		}
	}
	if st := containerStatus(t, b, running); st.GetUser().GetLinux() == nil {
		t.Errorf("user of a running container unknown after restart")
	}
	// The restarted Berth still drives them.
	if err := b.Runtime.StartContainer(ctx, created); err != nil {
		t.Errorf("start after restart: %v", err)
	}
	if err := b.Runtime.StopContainer(ctx, running, 1); err != nil {
		t.Errorf("stop after restart: %v", err)
	}
}
