package dockerspec

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func sandboxConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1", Attempt: 2},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/prod_web_u-1",
		Labels:       map[string]string{"app": "web", "annotation.odd": "label"},
		Annotations:  map[string]string{"a": "b"},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func TestSandboxSpec(t *testing.T) {
	base := SandboxOptions{Image: "pause:1", RootDir: "/var/lib/berth", CNI: true, CgroupDriver: "cgroupfs", Runtimes: []string{"runc", "kata"}, OOM: OOMPolicy{Clamp: true, Min: 0}}
	for _, tc := range []struct {
		name    string
		mod     func(*runtimeapi.PodSandboxConfig)
		opts    func(*SandboxOptions)
		handler string
		check   func(t *testing.T, s *CreateSpec)
		errText string
	}{
		{name: "defaults", check: func(t *testing.T, s *CreateSpec) {
			if s.Name != "k8s_POD_web_prod_u-1_2" {
				t.Errorf("name %q", s.Name)
			}
			hc := s.HostConfig
			if hc.NetworkMode != "none" || hc.IpcMode != "shareable" || hc.PidMode != "" || s.Config.Hostname != "web-0" {
				t.Errorf("modes: net %q ipc %q pid %q host %q", hc.NetworkMode, hc.IpcMode, hc.PidMode, s.Config.Hostname)
			}
			if hc.OomScoreAdj != 0 || hc.CPUShares != 2 {
				t.Errorf("oom %d (clamped from -998) shares %d", hc.OomScoreAdj, hc.CPUShares)
			}
			l := s.Config.Labels
			if l[LabelType] != TypeSandbox || l[LabelContainerName] != "POD" || l["app"] != "web" || l["annotation.a"] != "b" || l[LabelRoot] != "/var/lib/berth" {
				t.Errorf("labels %v", l)
			}
			var meta sandboxMeta
			if err := json.Unmarshal([]byte(l[LabelSandboxMeta]), &meta); err != nil || meta.Labels["annotation.odd"] != "label" || meta.Annotations["a"] != "b" || meta.LogDirectory == "" {
				t.Errorf("meta %+v %v", meta, err)
			}
		}},
		{name: "host network, pid, ipc", mod: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}}
		}, check: func(t *testing.T, s *CreateSpec) {
			hc := s.HostConfig
			if hc.NetworkMode != "host" || hc.UTSMode != "host" || hc.PidMode != "host" || hc.IpcMode != "host" || s.Config.Hostname != "" {
				t.Errorf("%q %q %q %q %q", hc.NetworkMode, hc.UTSMode, hc.PidMode, hc.IpcMode, s.Config.Hostname)
			}
		}},
		{name: "docker bridge publishes ports", opts: func(o *SandboxOptions) { o.CNI = false }, mod: func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353, HostIp: "127.0.0.1"}, {ContainerPort: 80}}
		}, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.NetworkMode != "" || len(s.Config.ExposedPorts) != 2 || len(s.HostConfig.PortBindings) != 1 {
				t.Errorf("mode %q exposed %v bindings %v", s.HostConfig.NetworkMode, s.Config.ExposedPorts, s.HostConfig.PortBindings)
			}
			for p, b := range s.HostConfig.PortBindings {
				if p.String() != "53/udp" || b[0].HostPort != "5353" || b[0].HostIP.String() != "127.0.0.1" {
					t.Errorf("binding %v %v", p, b)
				}
			}
		}},
		{name: "dns, sysctls, cgroup parent, user, selinux", mod: func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10", "fd00::a"}, Searches: []string{"a.svc"}, Options: []string{"ndots:5"}}
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
			c.Linux.CgroupParent = "/kubepods/burstable/podu-1"
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: 65535}, RunAsGroup: &runtimeapi.Int64Value{Value: 65534},
				SupplementalGroups: []int64{10}, ReadonlyRootfs: true,
				SelinuxOptions: &runtimeapi.SELinuxOption{Type: "spc_t", Level: "s0"}}
		}, check: func(t *testing.T, s *CreateSpec) {
			hc := s.HostConfig
			if len(hc.DNS) != 2 || hc.DNS[1].String() != "fd00::a" || hc.DNSSearch[0] != "a.svc" || hc.DNSOptions[0] != "ndots:5" {
				t.Errorf("dns %v %v %v", hc.DNS, hc.DNSSearch, hc.DNSOptions)
			}
			if hc.Sysctls["kernel.shm_rmid_forced"] != "1" || hc.CgroupParent != "/kubepods/burstable/podu-1" {
				t.Errorf("sysctls %v parent %q", hc.Sysctls, hc.CgroupParent)
			}
			if s.Config.User != "65535:65534" || !slices.Equal(hc.GroupAdd, []string{"10"}) || !hc.ReadonlyRootfs {
				t.Errorf("user %q groups %v ro %v", s.Config.User, hc.GroupAdd, hc.ReadonlyRootfs)
			}
			if !slices.Equal(hc.SecurityOpt, []string{"label=type:spc_t", "label=level:s0", "seccomp=unconfined"}) {
				t.Errorf("security opts %v", hc.SecurityOpt)
			}
		}},
		{name: "systemd cgroup parent", opts: func(o *SandboxOptions) { o.CgroupDriver = "systemd" }, mod: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.CgroupParent = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice"
		}, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.CgroupParent != "kubepods-burstable-podu_1.slice" {
				t.Errorf("parent %q", s.HostConfig.CgroupParent)
			}
		}},
		{name: "runtime handler", handler: "kata", check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.Runtime != "kata" {
				t.Errorf("runtime %q", s.HostConfig.Runtime)
			}
		}},
		{name: "unknown runtime handler", handler: "gvisor", errText: "runtime_handler"},
		{name: "host user namespace on a remapping daemon", opts: func(o *SandboxOptions) { o.UsernsRemap = true }, mod: sandboxUserns(runtimeapi.NamespaceMode_NODE), check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "host" {
				t.Errorf("userns %q", s.HostConfig.UsernsMode)
			}
		}},
		{name: "no user namespace options on a remapping daemon", opts: func(o *SandboxOptions) { o.UsernsRemap = true }, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "host" {
				t.Errorf("userns %q", s.HostConfig.UsernsMode)
			}
		}},
		{name: "pod user namespace on a remapping daemon", opts: func(o *SandboxOptions) { o.UsernsRemap = true }, mod: sandboxUserns(runtimeapi.NamespaceMode_POD), check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.UsernsMode != "" {
				t.Errorf("userns %q", s.HostConfig.UsernsMode)
			}
		}},
		{name: "pod user namespace without remapping or wrapper", opts: func(o *SandboxOptions) { o.Userns = errors.New("no berth-userns") }, mod: sandboxUserns(runtimeapi.NamespaceMode_POD),
			errText: "userns_options.mode: POD: Docker has user namespaces only as a daemon-wide remapping (dockerd --userns-remap), which this Docker does not use, and Berth's runtime wrapper cannot run it: no berth-userns; run the pod with hostUsers: true"},
		{name: "pod user namespace through the wrapper", mod: sandboxUserns(runtimeapi.NamespaceMode_POD), check: func(t *testing.T, s *CreateSpec) {
			want := map[string]string{"io.berth.userns.uids": "0:100000:65536", "io.berth.userns.gids": "0:100000:65536", "io.berth.userns.role": "sandbox"}
			if s.HostConfig.Runtime != "berth-userns" || !maps.Equal(s.HostConfig.Annotations, want) || s.HostConfig.UsernsMode != "" {
				t.Errorf("runtime %q annotations %v userns %q", s.HostConfig.Runtime, s.HostConfig.Annotations, s.HostConfig.UsernsMode)
			}
		}},
		{name: "pod user namespace through the wrapper by name", handler: "berth-userns", opts: func(o *SandboxOptions) { o.Runtimes = []string{"berth-userns"} }, mod: sandboxUserns(runtimeapi.NamespaceMode_POD), check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.Runtime != "berth-userns" {
				t.Errorf("runtime %q", s.HostConfig.Runtime)
			}
		}},
		{name: "pod user namespace with another handler", handler: "kata", mod: sandboxUserns(runtimeapi.NamespaceMode_POD),
			errText: `runtime_handler: "kata": a pod with a user namespace of its own runs through Berth's runtime berth-userns`},
		{name: "no user namespace, no wrapper", mod: sandboxUserns(runtimeapi.NamespaceMode_NODE), check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.Runtime != "" || len(s.HostConfig.Annotations) != 0 {
				t.Errorf("runtime %q annotations %v", s.HostConfig.Runtime, s.HostConfig.Annotations)
			}
		}},
		{name: "pod user namespace with the host's network", opts: func(o *SandboxOptions) { o.UsernsRemap = true }, mod: func(c *runtimeapi.PodSandboxConfig) {
			sandboxUserns(runtimeapi.NamespaceMode_POD)(c)
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		}, errText: "with the host's network"},
		{name: "pod seccomp and apparmor confine the pause container", opts: func(o *SandboxOptions) {
			o.ReadFile = func(string) ([]byte, error) { return []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), nil }
		}, mod: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
				Seccomp:  &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/p.json"},
				Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			}
		}, check: func(t *testing.T, s *CreateSpec) {
			if !slices.Equal(s.HostConfig.SecurityOpt, []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, "apparmor=unconfined"}) {
				t.Errorf("security opts %v", s.HostConfig.SecurityOpt)
			}
		}},
		{name: "pod apparmor profile without apparmor", mod: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}}
		}, errText: "config.linux.security_context.apparmor"},
		{name: "no OOM clamp", opts: func(o *SandboxOptions) { o.OOM = OOMPolicy{} }, check: func(t *testing.T, s *CreateSpec) {
			if s.HostConfig.OomScoreAdj != -998 {
				t.Errorf("oom %d", s.HostConfig.OomScoreAdj)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sandboxConfig()
			if tc.mod != nil {
				tc.mod(c)
			}
			o := base
			if tc.opts != nil {
				tc.opts(&o)
			}
			if err := ValidatePodSandboxConfig(c); err != nil {
				t.Fatal(err)
			}
			s, err := SandboxSpec(c, tc.handler, o)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want %q", err, tc.errText)
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

func sandboxUserns(mode runtimeapi.NamespaceMode) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			UsernsOptions: &runtimeapi.UserNamespace{Mode: mode,
				Uids: []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}},
				Gids: []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}}}}
	}
}

func TestCgroupParent(t *testing.T) {
	for _, tc := range []struct{ in, driver, want string }{
		{"", "systemd", ""},
		{"/kubepods/besteffort/pod1", "cgroupfs", "/kubepods/besteffort/pod1"},
		{"/kubepods.slice/kubepods-pod1.slice", "systemd", "kubepods-pod1.slice"},
		{"kubepods-pod1.slice", "systemd", "kubepods-pod1.slice"},
		{"/kubepods/besteffort/pod1", "systemd", "kubepods-besteffort-pod1.slice"},
	} {
		got, err := CgroupParent(tc.in, tc.driver)
		if err != nil || got != tc.want {
			t.Errorf("CgroupParent(%q, %s) = %q, %v; want %q", tc.in, tc.driver, got, err, tc.want)
		}
	}
	if _, err := CgroupParent("/a-b/c", "systemd"); err == nil {
		t.Errorf("an unconvertible parent was accepted")
	}
}

func TestNamesRoundTrip(t *testing.T) {
	pod := &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1", Attempt: 3}
	for _, tc := range []struct {
		name, ctr string
		attempt   uint32
	}{
		{SandboxName(pod), "POD", 3},
		{"/" + ContainerName(pod, &runtimeapi.ContainerMetadata{Name: "app", Attempt: 7}), "app", 7},
		{ContainerName(pod, &runtimeapi.ContainerMetadata{Name: "app", Attempt: 7}) + "_1a2b3c4d", "app", 7},
	} {
		ctr, p, attempt, err := ParseName(tc.name)
		if err != nil || ctr != tc.ctr || attempt != tc.attempt || p.Name != "web" || p.Namespace != "prod" || p.Uid != "u-1" {
			t.Errorf("ParseName(%q) = %q %v %d %v", tc.name, ctr, p, attempt, err)
		}
	}
	for _, bad := range []string{"nginx", "k8s_a_b", "k9s_POD_a_b_c_0", "k8s_POD_a_b_c_x"} {
		if _, _, _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

func TestSandboxFromInspectAdoptsCriDockerd(t *testing.T) {
	in := container.InspectResponse{
		ID:      "abc",
		Name:    "/k8s_POD_web_prod_u-1_0",
		Created: "2026-11-22T10:00:00.5Z",
		State:   &container.State{Running: true, Pid: 42},
		Config: &container.Config{Hostname: "web", Labels: map[string]string{
			LabelType: TypeSandbox, LabelContainerName: "POD", "io.kubernetes.pod.name": "web", "annotation.seen": "yes",
		}},
		HostConfig: &container.HostConfig{NetworkMode: "none", IpcMode: "shareable", Runtime: "runc"},
	}
	sb, err := SandboxFromInspect(in, "/var/lib/berth")
	if err != nil {
		t.Fatal(err)
	}
	if !sb.Adopted || sb.Owned || sb.Metadata.GetName() != "web" || sb.Metadata.GetUid() != "u-1" || sb.Pid != 42 || !sb.Running {
		t.Errorf("record %+v", sb)
	}
	if sb.Labels["io.kubernetes.pod.name"] != "web" || sb.Annotations["seen"] != "yes" || len(sb.Labels) != 1 || sb.RuntimeHandler != "" {
		t.Errorf("labels %v annotations %v handler %q", sb.Labels, sb.Annotations, sb.RuntimeHandler)
	}
	if sb.CreatedAt != 1795341600500000000 {
		t.Errorf("created %d", sb.CreatedAt)
	}
}
