package dockerspec

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

func podRecord() *store.Sandbox {
	return &store.Sandbox{
		ID: "sandbox1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1"},
		Namespaces: &runtimeapi.NamespaceOption{}, LogDirectory: "/var/log/pods/x", CgroupParent: "/kubepods/podu-1", RuntimeHandler: "kata",
	}
}

func ctrConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
		Image:    &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "nginx"},
		LogPath:  "app/1.log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func TestContainerSpec(t *testing.T) {
	unsupported := errors.New("not on this Docker")
	base := ContainerOptions{RootDir: "/var/lib/berth", APIVersion: "1.41", CgroupVersion: "1", OOM: OOMPolicy{Clamp: true}, LogMaxSize: "50m", LogMaxFile: "2",
		RecursiveReadOnly: unsupported, ImageMounts: unsupported, CDI: unsupported}
	current := func(o *ContainerOptions) {
		o.APIVersion, o.RecursiveReadOnly, o.ImageMounts, o.CDI = "1.56", nil, nil, nil
	}
	for _, tc := range []struct {
		name    string
		mod     func(*runtimeapi.ContainerConfig)
		opts    func(*ContainerOptions)
		pod     func(*store.Sandbox)
		check   func(t *testing.T, s *CreateSpec)
		errText string
	}{
		{name: "identity and joins", mod: func(c *runtimeapi.ContainerConfig) {
			c.Command, c.Args, c.WorkingDir = []string{"/bin/app"}, []string{"-v"}, "/srv"
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1=2")}}
			c.Tty, c.Stdin, c.StdinOnce = true, true, true
			c.StopSignal = runtimeapi.Signal_SIGNAL_SIGQUIT
		}, check: func(t *testing.T, s *CreateSpec) {
			c, hc := s.Config, s.HostConfig
			if s.Name != "k8s_app_web_prod_u-1_1" || c.Image != "sha256:abc" {
				t.Errorf("name %q image %q", s.Name, c.Image)
			}
			if !slices.Equal(c.Entrypoint, []string{"/bin/app"}) || !slices.Equal(c.Cmd, []string{"-v"}) || c.WorkingDir != "/srv" || !slices.Equal(c.Env, []string{"A=1=2"}) {
				t.Errorf("process %v %v %q %v", c.Entrypoint, c.Cmd, c.WorkingDir, c.Env)
			}
			if !c.Tty || !c.OpenStdin || !c.StdinOnce || c.StopSignal != "SIGQUIT" {
				t.Errorf("tty/stdin/stop %v %v %v %q", c.Tty, c.OpenStdin, c.StdinOnce, c.StopSignal)
			}
			if hc.NetworkMode != "container:sandbox1" || hc.IpcMode != "container:sandbox1" || hc.PidMode != "container:sandbox1" {
				t.Errorf("joins %q %q %q", hc.NetworkMode, hc.IpcMode, hc.PidMode)
			}
			if hc.CgroupParent != "/kubepods/podu-1" || hc.Runtime != "kata" || hc.LogConfig.Type != "json-file" || hc.LogConfig.Config["max-size"] != "50m" {
				t.Errorf("parent %q runtime %q log %v", hc.CgroupParent, hc.Runtime, hc.LogConfig)
			}
			if c.Labels[LabelSandboxID] != "sandbox1" || c.Labels[LabelLogPath] != "/var/log/pods/x/app/1.log" || c.Labels[LabelType] != TypeContainer {
				t.Errorf("labels %v", c.Labels)
			}
		}},
		{name: "args only keep the image's entrypoint", mod: func(c *runtimeapi.ContainerConfig) { c.Args = []string{"x"} }, check: func(t *testing.T, s *CreateSpec) {
			if s.Config.Entrypoint != nil || !slices.Equal(s.Config.Cmd, []string{"x"}) {
				t.Errorf("%v %v", s.Config.Entrypoint, s.Config.Cmd)
			}
		}},
		{name: "pid modes", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.PidMode != "container:other" {
				t.Errorf("pid %q", s.HostConfig.PidMode)
			}
		}},
		{name: "host network pod", pod: func(sb *store.Sandbox) {
			sb.Namespaces = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE}
		}, check: func(t *testing.T, s *CreateSpec) {
			hc := s.HostConfig
			if hc.NetworkMode != "host" || hc.UTSMode != "host" || hc.IpcMode != "host" || hc.PidMode != "host" {
				t.Errorf("%q %q %q %q", hc.NetworkMode, hc.UTSMode, hc.IpcMode, hc.PidMode)
			}
		}},
		{name: "resources", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30,
				MemorySwapLimitInBytes: 2 << 30, OomScoreAdj: -500, CpusetCpus: "0-1", CpusetMems: "0",
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 1 << 30}}}
		}, check: func(t *testing.T, s *CreateSpec) {
			r := s.HostConfig.Resources
			if r.CPUPeriod != 100000 || r.CPUQuota != 50000 || r.CPUShares != 512 || r.Memory != 1<<30 || r.MemorySwap != 2<<30 || r.CpusetCpus != "0-1" || r.CpusetMems != "0" {
				t.Errorf("resources %+v", r)
			}
			if s.HostConfig.OomScoreAdj != 0 {
				t.Errorf("oom %d, want clamped to 0", s.HostConfig.OomScoreAdj)
			}
			if !strings.Contains(s.Config.Labels[LabelContainerMeta], `"hugepages":[{"page_size":"1GB","limit":1073741824}]`) {
				t.Errorf("non-zero hugepages not recorded: %s", s.Config.Labels[LabelContainerMeta])
			}
		}},
		{name: "unified on cgroup v1", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000"}}
		}, errText: "config.linux.resources.unified"},
		{name: "security context", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:  &runtimeapi.Capability{AddCapabilities: []string{"net_admin", "CAP_SYS_TIME", "NET_ADMIN"}, DropCapabilities: []string{"all"}},
				RunAsUsername: "app", RunAsGroup: &runtimeapi.Int64Value{Value: 7},
				SupplementalGroups: []int64{8, 9}, ReadonlyRootfs: true, NoNewPrivs: true,
				MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{},
				SeccompProfilePath: "unconfined", ApparmorProfile: "runtime/default",
				SelinuxOptions: &runtimeapi.SELinuxOption{Role: "r"},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			hc := s.HostConfig
			if !slices.Equal(hc.CapAdd, []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}) || !slices.Equal(hc.CapDrop, []string{"ALL"}) {
				t.Errorf("caps %v %v", hc.CapAdd, hc.CapDrop)
			}
			if s.Config.User != "app:7" || !slices.Equal(hc.GroupAdd, []string{"8", "9"}) || !hc.ReadonlyRootfs {
				t.Errorf("user %q groups %v", s.Config.User, hc.GroupAdd)
			}
			if !slices.Equal(hc.MaskedPaths, []string{"/proc/kcore"}) || hc.ReadonlyPaths == nil || len(hc.ReadonlyPaths) != 0 {
				t.Errorf("masked %v readonly %#v", hc.MaskedPaths, hc.ReadonlyPaths)
			}
			if !slices.Equal(hc.SecurityOpt, []string{"no-new-privileges", "label=role:r", "seccomp=unconfined"}) {
				t.Errorf("security opts %v", hc.SecurityOpt)
			}
		}},
		{name: "privileged on a host with every capability", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
		}, check: func(t *testing.T, s *CreateSpec) {
			if !s.HostConfig.Privileged || len(s.HostConfig.CapAdd) != 0 {
				t.Errorf("privileged %v caps %v", s.HostConfig.Privileged, s.HostConfig.CapAdd)
			}
		}},
		{name: "privileged on a host lacking capabilities", opts: func(o *ContainerOptions) {
			o.HostCapabilities = []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}
			o.HostDevices = []string{"/dev/kmsg"}
		}, mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true, MaskedPaths: []string{"/proc/kcore"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			hc := s.HostConfig
			if hc.Privileged || !slices.Equal(hc.CapAdd, []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}) || len(hc.Devices) != 1 || hc.Devices[0].CgroupPermissions != "rwm" {
				t.Errorf("privileged %v caps %v devices %v", hc.Privileged, hc.CapAdd, hc.Devices)
			}
			if len(hc.MaskedPaths) != 0 || hc.MaskedPaths == nil || !slices.Contains(hc.SecurityOpt, "seccomp=unconfined") || !slices.Equal(hc.DeviceCgroupRules, []string{"a *:* rwm"}) {
				t.Errorf("masked %#v opts %v rules %v", hc.MaskedPaths, hc.SecurityOpt, hc.DeviceCgroupRules)
			}
		}},
		{name: "localhost seccomp is inlined", opts: func(o *ContainerOptions) {
			o.ReadFile = func(p string) ([]byte, error) {
				if p != "/profiles/p.json" {
					return nil, errors.New("no such file")
				}
				return []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`), nil
			}
		}, mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/profiles/p.json"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			if !slices.Equal(s.HostConfig.SecurityOpt, []string{`seccomp={"defaultAction":"SCMP_ACT_ERRNO"}`}) {
				t.Errorf("opts %v", s.HostConfig.SecurityOpt)
			}
		}},
		{name: "legacy binds below API 1.42", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/a", HostPath: "/host/a", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				{ContainerPath: "/b", HostPath: "/link", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, SelinuxRelabel: true},
			}
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse"}}
		}, opts: func(o *ContainerOptions) { o.HostPaths, o.SELinux = map[string]string{"/link": "/real"}, true }, check: func(t *testing.T, s *CreateSpec) {
			if !slices.Equal(s.HostConfig.Binds, []string{"/host/a:/a:ro,rslave", "/real:/b:rw,rshared,Z"}) || len(s.HostConfig.Mounts) != 0 {
				t.Errorf("binds %v mounts %v", s.HostConfig.Binds, s.HostConfig.Mounts)
			}
			if d := s.HostConfig.Devices; len(d) != 1 || d[0].CgroupPermissions != "rwm" {
				t.Errorf("devices %v", d)
			}
		}},
		{name: "legacy binds without SELinux are not relabelled", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/b", HostPath: "/host/b", Readonly: true, SelinuxRelabel: true}}
		}, check: func(t *testing.T, s *CreateSpec) {
			if !slices.Equal(s.HostConfig.Binds, []string{"/host/b:/b:ro,rprivate"}) || len(s.HostConfig.Mounts) != 0 {
				t.Errorf("binds %v mounts %v", s.HostConfig.Binds, s.HostConfig.Mounts)
			}
		}},
		{name: "mount API from 1.42, non-recursive read-only from 1.44", opts: func(o *ContainerOptions) { o.APIVersion, o.RecursiveReadOnly, o.SELinux = "1.44", nil, true }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/a", HostPath: "/host/a", Readonly: true},
				{ContainerPath: "/r", HostPath: "/host/r", Readonly: true, RecursiveReadOnly: true},
				{ContainerPath: "/z", HostPath: "/host/z", SelinuxRelabel: true},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			m := s.HostConfig.Mounts
			if len(m) != 2 || m[0].Type != mount.TypeBind || !m[0].ReadOnly || !m[0].BindOptions.ReadOnlyNonRecursive || !m[0].BindOptions.CreateMountpoint || m[0].BindOptions.Propagation != mount.PropagationRPrivate {
				t.Errorf("mount 0 %+v %+v", m[0], m[0].BindOptions)
			}
			if !m[1].BindOptions.ReadOnlyForceRecursive || m[1].BindOptions.ReadOnlyNonRecursive {
				t.Errorf("mount 1 %+v", m[1].BindOptions)
			}
			if !slices.Equal(s.HostConfig.Binds, []string{"/host/z:/z:rw,rprivate,Z"}) {
				t.Errorf("binds %v", s.HostConfig.Binds)
			}
		}},
		{name: "selinux_relabel without SELinux leaves a mount as it is", opts: current, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/ro", HostPath: "/host/ro", Readonly: true, SelinuxRelabel: true},
				{ContainerPath: "/rro", HostPath: "/host/rro", Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: true},
				{ContainerPath: "/a:b", HostPath: "/host/a:b", SelinuxRelabel: true},
				{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}, SelinuxRelabel: true},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			if len(s.HostConfig.Binds) != 0 {
				t.Errorf("binds %v, want none", s.HostConfig.Binds)
			}
			m := s.HostConfig.Mounts
			if len(m) != 4 || m[0].Type != mount.TypeBind || !m[0].ReadOnly || !m[0].BindOptions.ReadOnlyNonRecursive || m[0].BindOptions.ReadOnlyForceRecursive {
				t.Fatalf("mounts %+v", m)
			}
			if !m[1].ReadOnly || !m[1].BindOptions.ReadOnlyForceRecursive || m[1].BindOptions.ReadOnlyNonRecursive {
				t.Errorf("mount 1 %+v", m[1].BindOptions)
			}
			if m[2].Source != "/host/a:b" || m[3].Type != mount.TypeImage {
				t.Errorf("mounts 2, 3: %+v %+v", m[2], m[3])
			}
		}},
		{name: "a colon in a bind's host path", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/host/a:z"}}
		}, errText: "config.mounts[0].host_path"},
		{name: "a colon in a resolved host path", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/link"}}
		}, opts: func(o *ContainerOptions) { o.HostPaths = map[string]string{"/link": "/etc:/x"} }, errText: "config.mounts[0].host_path"},
		{name: "a colon in a bind's container path", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a:ro", HostPath: "/host/a"}}
		}, errText: "config.mounts[0].container_path"},
		{name: "a colon is fine through the mount API", opts: func(o *ContainerOptions) { o.APIVersion = "1.44" }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a:b", HostPath: "/host/a:b"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			if m := s.HostConfig.Mounts; len(m) != 1 || m[0].Source != "/host/a:b" || m[0].Target != "/a:b" {
				t.Errorf("mounts %+v", m)
			}
		}},
		{name: "recursive read-only on old Docker", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: "/host/r", Readonly: true, RecursiveReadOnly: true}}
		}, errText: "config.mounts[0].recursive_read_only: not on this Docker"},
		{name: "recursive read-only cannot be relabelled with SELinux", opts: func(o *ContainerOptions) { current(o); o.SELinux = true }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: "/host/r", Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: true}}
		}, errText: "config.mounts[0].recursive_read_only: cannot be combined with selinux_relabel: Docker relabels only legacy binds"},
		{name: "a colon in a relabelled host path with SELinux", opts: func(o *ContainerOptions) { current(o); o.SELinux = true }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/host/a:z", SelinuxRelabel: true}}
		}, errText: "config.mounts[0].host_path"},
		{name: "image volumes cannot be relabelled with SELinux", opts: func(o *ContainerOptions) { current(o); o.SELinux = true }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}, SelinuxRelabel: true}}
		}, errText: "config.mounts[0].selinux_relabel: Docker cannot relabel an image mount"},
		{name: "image volumes", opts: current, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}},
				{ContainerPath: "/sub", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}, ImageSubPath: "usr/share/../share", Readonly: true},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			m := s.HostConfig.Mounts
			if len(m) != 2 || m[0].Type != mount.TypeImage || m[0].Source != "sha256:img" || m[0].Target != "/img" || !m[0].ReadOnly || m[0].ImageOptions != nil || m[0].BindOptions != nil {
				t.Errorf("mount 0 %+v", m[0])
			}
			if m[1].ImageOptions == nil || m[1].ImageOptions.Subpath != "usr/share" {
				t.Errorf("mount 1 %+v", m[1])
			}
		}},
		{name: "image volumes on old Docker", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}}}
		}, errText: "config.mounts[0].image: not on this Docker"},
		{name: "image volumes are private", opts: current, mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:img"}, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		}, errText: "config.mounts[0].propagation"},
		{name: "CDI devices", opts: current, mod: func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}, {Name: "vendor.com/gpu=all"}, {Name: "vendor.com/gpu=0"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			r := s.HostConfig.DeviceRequests
			if len(r) != 1 || r[0].Driver != "cdi" || !slices.Equal(r[0].DeviceIDs, []string{"vendor.com/gpu=0", "vendor.com/gpu=all"}) {
				t.Errorf("device requests %+v", r)
			}
		}},
		{name: "CDI devices Docker does not know", opts: func(o *ContainerOptions) { current(o); o.CDIDevices = []string{"vendor.com/gpu=0"} }, mod: func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}, {Name: "vendor.com/gpu=1"}}
		}, errText: "config.CDI_devices[1].name"},
		{name: "CDI devices on old Docker", mod: func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
		}, errText: "config.CDI_devices: not on this Docker"},
		{name: "host user namespace on a remapping daemon", opts: func(o *ContainerOptions) { o.UsernsRemap = true }, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "host" {
				t.Errorf("userns %q", s.HostConfig.UsernsMode)
			}
		}},
		{name: "host user namespace", check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "" {
				t.Errorf("userns %q", s.HostConfig.UsernsMode)
			}
		}},
		{name: "pod user namespace on a remapping daemon", opts: func(o *ContainerOptions) { o.UsernsRemap = true }, pod: podUserns, mod: containerUserns, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "" || s.HostConfig.NetworkMode != "container:sandbox1" {
				t.Errorf("userns %q network %q", s.HostConfig.UsernsMode, s.HostConfig.NetworkMode)
			}
		}},
		{name: "pod user namespace without remapping or wrapper", opts: noWrapper, pod: podUserns, mod: containerUserns, errText: "config.linux.security_context.namespace_options.userns_options.mode: POD: Docker has user namespaces only as a daemon-wide remapping (dockerd --userns-remap), which this Docker does not use, and Berth's runtime wrapper cannot run it: no berth-userns"},
		{name: "pod user namespace through the wrapper", pod: wrapperPod, mod: func(c *runtimeapi.ContainerConfig) {
			containerUserns(c)
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/plain", HostPath: "/h"},
				{ContainerPath: "/mapped/", HostPath: "/h", UidMappings: podMappings(), GidMappings: podMappings()},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			want := map[string]string{
				"io.berth.userns.uids": "0:100000:65536", "io.berth.userns.gids": "0:100000:65536",
				"io.berth.userns.role": "container", "io.berth.userns.idmapped-mounts": `["/mapped"]`,
			}
			if s.HostConfig.Runtime != "berth-userns" || !maps.Equal(s.HostConfig.Annotations, want) || s.HostConfig.UsernsMode != "" {
				t.Errorf("runtime %q annotations %v userns %q", s.HostConfig.Runtime, s.HostConfig.Annotations, s.HostConfig.UsernsMode)
			}
		}},
		{name: "pod user namespace through the wrapper with another handler", pod: func(sb *store.Sandbox) { wrapperPod(sb); sb.RuntimeHandler = "kata" }, mod: containerUserns,
			errText: `runtime_handler: "kata": a pod with a user namespace of its own runs through Berth's runtime berth-userns`},
		{name: "id-mapped mount with other mappings", pod: wrapperPod, mod: func(c *runtimeapi.ContainerConfig) {
			containerUserns(c)
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", UidMappings: []*runtimeapi.IDMapping{{HostId: 1000, Length: 1}}, GidMappings: podMappings()}}
		}, errText: "config.mounts[0].uidMappings: a mount can be id-mapped only with its pod's mappings (uids 0:100000:65536, gids 0:100000:65536)"},
		{name: "id-mapped image volume", pod: wrapperPod, mod: func(c *runtimeapi.ContainerConfig) {
			containerUserns(c)
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", Image: &runtimeapi.ImageSpec{Image: "img"}, UidMappings: podMappings(), GidMappings: podMappings()}}
		}, opts: func(o *ContainerOptions) { o.ImageMounts = nil }, errText: "config.mounts[0].uidMappings: an image volume cannot be id-mapped"},
		{name: "id-mapped mount without a user namespace", mod: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", UidMappings: podMappings(), GidMappings: podMappings()}}
		}, errText: "config.mounts[0].uidMappings: id-mapped mounts need a pod with a user namespace of its own"},
		{name: "container user namespace differs from the pod's", opts: func(o *ContainerOptions) { o.UsernsRemap = true }, pod: podUserns, errText: "config.linux.security_context.namespace_options.userns_options.mode"},
		{name: "apparmor profile without apparmor", mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}
		}, errText: "config.linux.security_context.apparmor"},
		{name: "apparmor profile with apparmor", opts: func(o *ContainerOptions) { o.AppArmor = true }, mod: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}
		}, check: func(t *testing.T, s *CreateSpec) {
			if !slices.Equal(s.HostConfig.SecurityOpt, []string{"seccomp=unconfined", "apparmor=k8s-nginx"}) {
				t.Errorf("opts %v", s.HostConfig.SecurityOpt)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig()
			if tc.mod != nil {
				tc.mod(c)
			}
			o := base
			if tc.opts != nil {
				tc.opts(&o)
			}
			sb := podRecord()
			if tc.pod != nil {
				tc.pod(sb)
			}
			err := ValidateContainerConfig(c)
			var s *CreateSpec
			if err == nil {
				s, err = ContainerSpec(sb, c, o)
			}
			if tc.errText != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want one starting %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func noWrapper(o *ContainerOptions) { o.Userns = errors.New("no berth-userns") }

func podMappings() []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
}

// wrapperPod is a pod whose user namespace Berth's runtime wrapper makes.
func wrapperPod(sb *store.Sandbox) {
	sb.RuntimeHandler = ""
	sb.Namespaces.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: podMappings(), Gids: podMappings()}
}

func podUserns(sb *store.Sandbox) {
	sb.Namespaces.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
}

func containerUserns(c *runtimeapi.ContainerConfig) {
	c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}}
}

func TestValidateContainerConfigNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		mod   func(*runtimeapi.ContainerConfig)
		field string
	}{
		{func(c *runtimeapi.ContainerConfig) { c.Image = nil }, "config.image.image"},
		{func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "A=B"}} }, "config.envs[0].key"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "rel"}}
		}, "config.mounts[0].host_path"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", Image: &runtimeapi.ImageSpec{Image: "x"}}}
		}, "config.mounts[0].host_path"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", Image: &runtimeapi.ImageSpec{Image: "x"}, ImageSubPath: "../etc"}}
		}, "config.mounts[0].image_sub_path"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", ImageSubPath: "etc"}}
		}, "config.mounts[0].image_sub_path"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", MountOptions: []string{"noexec"}}}
		}, "config.mounts[0].mount_options"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/h", RecursiveReadOnly: true}}
		}, "config.mounts[0].recursive_read_only"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/x", Permissions: "rwx"}}
		}, "config.devices[0].permissions"},
		{func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}, {Name: "gpu0"}}
		}, "config.CDI_devices[1].name"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}}
		}, "config.linux.security_context.namespace_options.userns_options.mode"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}}
		}, "config.linux.security_context.namespace_options.target_id"},
		{func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "a", RunAsUser: &runtimeapi.Int64Value{Value: 1}}
		}, "config.linux.security_context.run_as_username"},
		{func(c *runtimeapi.ContainerConfig) { c.StopSignal = 999 }, "config.stop_signal"},
	} {
		c := ctrConfig()
		tc.mod(c)
		if err := ValidateContainerConfig(c); err == nil || !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("err = %v, want one naming %s", err, tc.field)
		}
	}
}

func TestContainerFromInspect(t *testing.T) {
	spec, err := ContainerSpec(podRecord(), func() *runtimeapi.ContainerConfig {
		c := ctrConfig()
		c.Labels = map[string]string{"l": "1"}
		c.Annotations = map[string]string{"io.kubernetes.container.hash": "h"}
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/h"}}
		return c
	}(), ContainerOptions{APIVersion: "1.41", RootDir: "/root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		state  container.State
		want   runtimeapi.ContainerState
		reason string
	}{
		{"created", container.State{Status: container.StateCreated}, runtimeapi.ContainerState_CONTAINER_CREATED, ""},
		{"running", container.State{Status: container.StateRunning, Running: true, Pid: 7, StartedAt: "2026-01-01T00:00:00Z"}, runtimeapi.ContainerState_CONTAINER_RUNNING, ""},
		{"completed", container.State{Status: container.StateExited, ExitCode: 0, FinishedAt: "2026-01-01T00:00:01Z"}, runtimeapi.ContainerState_CONTAINER_EXITED, "Completed"},
		{"error", container.State{Status: container.StateExited, ExitCode: 2, FinishedAt: "2026-01-01T00:00:01Z"}, runtimeapi.ContainerState_CONTAINER_EXITED, "Error"},
		{"oom", container.State{Status: container.StateExited, ExitCode: 137, OOMKilled: true, FinishedAt: "2026-01-01T00:00:01Z"}, runtimeapi.ContainerState_CONTAINER_EXITED, "OOMKilled"},
		{"start failed", container.State{Status: container.StateCreated, ExitCode: 127, Error: "exec: not found"}, runtimeapi.ContainerState_CONTAINER_EXITED, "StartError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.state
			in := container.InspectResponse{ID: "c1", Name: "/" + spec.Name, Created: "2025-12-31T00:00:00Z", Image: "sha256:abc",
				LogPath: "/var/lib/docker/containers/c1/c1-json.log", State: &st, Config: spec.Config, HostConfig: spec.HostConfig}
			c, err := ContainerFromInspect(in, "/root")
			if err != nil {
				t.Fatal(err)
			}
			if c.State != tc.want || c.Reason != tc.reason {
				t.Errorf("state %v reason %q", c.State, c.Reason)
			}
			if tc.want == runtimeapi.ContainerState_CONTAINER_EXITED && c.FinishedAt == 0 {
				t.Errorf("an exited container without finished_at")
			}
			if !c.Owned || c.SandboxID != "sandbox1" || c.Metadata.GetName() != "app" || c.Labels["l"] != "1" || c.Annotations["io.kubernetes.container.hash"] != "h" ||
				c.Image.GetUserSpecifiedImage() != "nginx" || c.LogPath != "/var/log/pods/x/app/1.log" || len(c.Mounts) != 1 || c.ImageID != "sha256:abc" {
				t.Errorf("record %+v", c)
			}
		})
	}
}

func TestSignals(t *testing.T) {
	for name, want := range map[string]runtimeapi.Signal{
		"": runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "SIGTERM": runtimeapi.Signal_SIGNAL_SIGTERM, "quit": runtimeapi.Signal_SIGNAL_SIGQUIT,
		"9": runtimeapi.Signal_SIGNAL_SIGKILL, "SIGRTMIN+3": runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3, "bogus": runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT,
	} {
		if got := SignalFromName(name); got != want {
			t.Errorf("SignalFromName(%q) = %v, want %v", name, got, want)
		}
	}
	if SignalName(runtimeapi.Signal_SIGNAL_SIGUSR2) != "SIGUSR2" || SignalName(runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1) != "SIGRTMAX-1" {
		t.Errorf("SignalName")
	}
}

// TestSeccompProfiles checks the seccomp option a container and a pod's
// pause container get for each way CRI can name (or not name) a profile:
// CRI defines none as unconfined, so only RuntimeDefault leaves Docker's
// default profile in place.
func TestSeccompProfiles(t *testing.T) {
	readFile := func(p string) ([]byte, error) {
		if p != "/p.json" {
			return nil, errors.New("no such file")
		}
		return []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), nil
	}
	profile := func(t runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: t, LocalhostRef: ref}
	}
	const unconfined = "seccomp=unconfined"
	for _, tc := range []struct {
		name       string
		noContext  bool // no security context at all
		seccomp    *runtimeapi.SecurityProfile
		legacy     string
		privileged bool
		want       string // "" for Docker's default profile
	}{
		{name: "no security context", noContext: true, want: unconfined},
		{name: "no profile", want: unconfined},
		{name: "unconfined", seccomp: profile(runtimeapi.SecurityProfile_Unconfined, ""), want: unconfined},
		{name: "runtime default", seccomp: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), want: ""},
		{name: "an empty profile is RuntimeDefault, the enum's zero", seccomp: &runtimeapi.SecurityProfile{}, want: ""},
		{name: "localhost", seccomp: profile(runtimeapi.SecurityProfile_Localhost, "/p.json"), want: `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`},
		{name: "legacy runtime/default", legacy: "runtime/default", want: ""},
		{name: "legacy docker/default", legacy: "docker/default", want: ""},
		{name: "legacy unconfined", legacy: "unconfined", want: unconfined},
		{name: "legacy localhost", legacy: "localhost//p.json", want: `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`},
		{name: "the profile wins over the legacy path", seccomp: profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), legacy: "unconfined", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig()
			if !tc.noContext {
				c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: tc.seccomp, SeccompProfilePath: tc.legacy}
			}
			s, err := ContainerSpec(podRecord(), c, ContainerOptions{APIVersion: "1.41", ReadFile: readFile})
			if err != nil {
				t.Fatal(err)
			}
			if got := seccompOf(s.HostConfig.SecurityOpt); got != tc.want {
				t.Errorf("container: seccomp option %q, want %q (all: %v)", got, tc.want, s.HostConfig.SecurityOpt)
			}

			p := sandboxConfig()
			if !tc.noContext {
				p.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: tc.seccomp, SeccompProfilePath: tc.legacy}
			}
			ps, err := SandboxSpec(p, "", SandboxOptions{Image: "pause:1", CgroupDriver: "cgroupfs", ReadFile: readFile})
			if err != nil {
				t.Fatal(err)
			}
			if got := seccompOf(ps.HostConfig.SecurityOpt); got != tc.want {
				t.Errorf("pause container: seccomp option %q, want %q (all: %v)", got, tc.want, ps.HostConfig.SecurityOpt)
			}
		})
	}
	// Privileged containers are unconfined whatever they name.
	for _, o := range []ContainerOptions{{APIVersion: "1.41"}, {APIVersion: "1.41", HostCapabilities: []string{"CAP_CHOWN"}}} {
		c := ctrConfig()
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: profile(runtimeapi.SecurityProfile_RuntimeDefault, "")}
		s, err := ContainerSpec(podRecord(), c, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := seccompOf(s.HostConfig.SecurityOpt); !s.HostConfig.Privileged && got != unconfined {
			t.Errorf("privileged (host caps %v): privileged mode %v, seccomp option %q", o.HostCapabilities, s.HostConfig.Privileged, got)
		}
	}
}

// seccompOf returns the seccomp= option among Docker security options.
func seccompOf(opts []string) string {
	for _, o := range opts {
		if strings.HasPrefix(o, "seccomp=") {
			return o
		}
	}
	return ""
}
