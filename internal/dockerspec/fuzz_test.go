package dockerspec

import (
	"regexp"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/store"
)

// The fuzz targets take arbitrary bytes, decode them as the CRI request
// kubelet would send, and run Berth's validation and translation. They
// must never panic, and a refusal must carry a client-error code and name
// the field it refuses. `go test` replays the committed corpus
// (testdata/fuzz); `go test -fuzz=FuzzX` searches for more.

// fieldPath is how a refusal starts: the request field it is about.
var fieldPath = regexp.MustCompile(`^(config|pod_sandbox_id|runtime_handler|image|auth|filter|linux|container_id)(\.[A-Za-z_]+|\[\d+\]|\[[^\]]+\])*[: ]`)

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	switch errdefs.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
	default:
		t.Fatalf("refusal with code %v: %v", errdefs.Code(err), err)
	}
	if !fieldPath.MatchString(err.Error()) {
		t.Fatalf("refusal does not name the field: %q", err.Error())
	}
}

func seedSandbox() *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u", Attempt: 1},
			Hostname:     "p",
			LogDirectory: "/var/log/pods/ns_p_u",
			DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc"}, Options: []string{"ndots:5"}},
			PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353, HostIp: "127.0.0.1"}},
			Labels:       map[string]string{"app": "x"},
			Annotations:  map[string]string{"kubernetes.io/egress-bandwidth": "1M"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{
				CgroupParent: "/kubepods/burstable/podu",
				Sysctls:      map[string]string{"net.ipv4.ip_forward": "1"},
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
					RunAsUser:        &runtimeapi.Int64Value{Value: 65535},
				},
			},
		},
		RuntimeHandler: "runc",
	}
}

func FuzzRunPodSandbox(f *testing.F) {
	for _, seed := range []proto.Message{seedSandbox(), &runtimeapi.RunPodSandboxRequest{}} {
		b, _ := proto.Marshal(seed)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req runtimeapi.RunPodSandboxRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		err := ValidatePodSandboxConfig(req.GetConfig())
		checkRefusal(t, err)
		if err != nil {
			return
		}
		for _, driver := range []string{"cgroupfs", "systemd"} {
			_, err = SandboxSpec(req.GetConfig(), req.GetRuntimeHandler(), SandboxOptions{
				Image: "pause", CNI: true, CgroupDriver: driver, Runtimes: []string{"runc"}, OOM: OOMPolicy{Clamp: true},
			})
			checkRefusal(t, err)
		}
	})
}

func seedContainer() *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: "abc",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: 2},
			Image:    &runtimeapi.ImageSpec{Image: "sha256:0123", UserSpecifiedImage: "busybox"},
			Command:  []string{"sh"}, Args: []string{"-c", "true"},
			Envs:    []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}},
			Mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/tmp", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			Devices: []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rw"}},
			LogPath: "c/0.log",
			Linux: &runtimeapi.LinuxContainerConfig{
				Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 1 << 20, OomScoreAdj: -5,
					HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					Capabilities:       &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"ALL"}},
					RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
					RunAsGroup:         &runtimeapi.Int64Value{Value: 1000},
					SupplementalGroups: []int64{5},
					Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/p.json"},
					Apparmor:           &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
					MaskedPaths:        []string{"/proc/kcore"},
					NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "def"},
				},
			},
			StopSignal: runtimeapi.Signal_SIGNAL_SIGUSR1,
		},
	}
}

func FuzzCreateContainer(f *testing.F) {
	for _, seed := range []proto.Message{seedContainer(), &runtimeapi.CreateContainerRequest{}} {
		b, _ := proto.Marshal(seed)
		f.Add(b)
	}
	sb := &store.Sandbox{ID: "abc", Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		Namespaces: &runtimeapi.NamespaceOption{}, LogDirectory: "/var/log/pods/x", CgroupParent: "/kubepods"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req runtimeapi.CreateContainerRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		err := ValidateContainerConfig(req.GetConfig())
		checkRefusal(t, err)
		if err != nil {
			return
		}
		for _, api := range []string{"1.41", "1.44"} {
			_, err = ContainerSpec(sb, req.GetConfig(), ContainerOptions{
				APIVersion: api, CgroupVersion: "1", OOM: OOMPolicy{Clamp: true},
				HostCapabilities: []string{"CAP_CHOWN"}, HostDevices: []string{"/dev/null"},
				ReadFile: func(string) ([]byte, error) { return []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), nil },
			})
			checkRefusal(t, err)
		}
	})
}

func FuzzImageReference(f *testing.F) {
	for _, s := range []string{"busybox", "docker.io/library/busybox:1.36", "127.0.0.1:5000/a/b@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "sha256:abc", "UPPER/case", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseImageRef(s)
		_, _ = DockerLookupRef(s)
		_, _ = NewImageFilter(s)
		_, _ = NewPinnedSet(s)
		_ = ImageID(s)
		_, _ = ImageUser(s)
		_, _, _, _ = ParseName(s)
		_ = SignalFromName(s)
		_, _ = CgroupParent(s, "systemd")
	})
}

func FuzzRegistryAuth(f *testing.F) {
	for _, seed := range []proto.Message{
		&runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "127.0.0.1:5000"},
		&runtimeapi.AuthConfig{Auth: "dTpw"},
		&runtimeapi.AuthConfig{IdentityToken: "t", RegistryToken: "r"},
	} {
		b, _ := proto.Marshal(seed)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a runtimeapi.AuthConfig
		if proto.Unmarshal(data, &a) != nil {
			return
		}
		_, err := RegistryAuth(&a)
		if err != nil && errdefs.Code(err) != codes.InvalidArgument {
			t.Fatalf("RegistryAuth refusal with code %v: %v", errdefs.Code(err), err)
		}
	})
}
