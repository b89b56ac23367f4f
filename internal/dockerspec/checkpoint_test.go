package dockerspec

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

func checkpointedContainer() (container.InspectResponse, *store.Container) {
	in := container.InspectResponse{
		ID: "c1", Path: "sh", Args: []string{"-c", "sleep 1"},
		Config:     &container.Config{Env: []string{"B=2", "A=1"}, WorkingDir: "", User: "1234:1234", Hostname: "web-0"},
		HostConfig: &container.HostConfig{Runtime: "runc", Mounts: []mount.Mount{{Type: mount.TypeBind, Target: "/data/"}}, Binds: []string{"/h:/legacy:ro"}},
		Mounts:     []container.MountPoint{{Type: mount.TypeBind, Source: "/h", Destination: "/data", RW: true, Propagation: mount.PropagationRPrivate}},
	}
	c := &store.Container{
		ID: "c1", SandboxID: "s1", Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, ImageID: "sha256:img",
		Image: &runtimeapi.ImageSpec{Image: "sha256:img", UserSpecifiedImage: "busybox"}, CreatedAt: time.Unix(100, 0).UnixNano(),
		Annotations: map[string]string{"io.kubernetes.container.hash": "h"},
		User:        &runtimeapi.LinuxContainerUser{Uid: 1234, Gid: 1234, SupplementalGroups: []int64{5555}},
	}
	return in, c
}

func TestCheckpointDumps(t *testing.T) {
	in, c := checkpointedContainer()
	sb := &store.Sandbox{ID: "s1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u1"}}
	cfg := CheckpointConfig(in, c, time.Unix(200, 0))
	if cfg.ID != "c1" || cfg.Name != "app" || cfg.RootfsImageRef != "sha256:img" || cfg.RootfsImageName != "busybox" || cfg.OCIRuntime != "runc" || cfg.CheckpointedAt.Unix() != 200 {
		t.Errorf("config.dump %+v", cfg)
	}
	spec := CheckpointSpec(in, c, sb)
	p := spec.Process
	if !slices.Equal(p.Args, []string{"sh", "-c", "sleep 1"}) || p.Cwd != "/" || p.User.UID != 1234 || !slices.Equal(p.User.AdditionalGids, []uint32{5555}) || p.User.Username != "1234:1234" {
		t.Errorf("spec.dump process %+v", p)
	}
	if spec.Annotations["io.kubernetes.cri.sandbox-name"] != "web" || spec.Annotations["io.kubernetes.cri.container-name"] != "app" || spec.Annotations["io.kubernetes.container.hash"] != "h" {
		t.Errorf("spec.dump annotations %v", spec.Annotations)
	}
	if len(spec.Mounts) != 1 || spec.Mounts[0].Destination != "/data" || !slices.Contains(spec.Mounts[0].Options, "rw") {
		t.Errorf("spec.dump mounts %+v", spec.Mounts)
	}
	skip := CheckpointSkipPaths(in)
	for _, want := range []string{"/data", "/legacy", "/etc/hosts", "/etc/resolv.conf"} {
		if !slices.Contains(skip, want) {
			t.Errorf("skip paths %v lack %s", skip, want)
		}
	}
}

func TestCheckRestoredProcess(t *testing.T) {
	in, c := checkpointedContainer()
	spec := CheckpointSpec(in, c, nil)
	same, _ := checkpointedContainer()
	same.Config.Env = []string{"A=1", "B=2"} // order does not matter
	if err := CheckRestoredProcess("container_configs[0]", same, spec); err != nil {
		t.Errorf("the same process: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*container.InspectResponse)
		want string
	}{
		{func(r *container.InspectResponse) { r.Args = []string{"-c", "sleep 2"} }, "command and arguments"},
		{func(r *container.InspectResponse) { r.Config.WorkingDir = "/srv" }, "working directory"},
		{func(r *container.InspectResponse) { r.Config.Env = []string{"A=1"} }, "environment"},
		{func(r *container.InspectResponse) { r.Config.User = "0" }, "user"},
	} {
		other, _ := checkpointedContainer()
		tc.mod(&other)
		err := CheckRestoredProcess("container_configs[0]", other, spec)
		if err == nil || !strings.HasPrefix(err.Error(), "container_configs[0]: the container's "+tc.want) {
			t.Errorf("err = %v, want one about the %s", err, tc.want)
		}
	}
}
