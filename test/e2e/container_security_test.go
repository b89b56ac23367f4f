package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// procStatus returns a field of /proc/self/status inside a container.
func procStatus(t *testing.T, id, field string) string {
	t.Helper()
	for _, line := range strings.Split(dockerExec(t, id, "cat", "/proc/self/status"), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return ""
}

func capSet(t *testing.T, id string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(procStatus(t, id, "CapEff"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const (
	capChown    = 0
	capNetAdmin = 12
	capSysAdmin = 21
)

func TestCapabilities(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-caps")
	cfg := containerConfig("caps", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"CAP_CHOWN"}},
	}
	id := p.run(t, cfg)
	caps := capSet(t, id)
	if caps&(1<<capNetAdmin) == 0 || caps&(1<<capChown) != 0 || caps&(1<<capSysAdmin) != 0 {
		t.Errorf("CapEff = %x: want NET_ADMIN, not CHOWN, not SYS_ADMIN", caps)
	}
	drop := containerConfig("dropall", "sleep 3600")
	drop.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"KILL"}},
	}
	id = p.run(t, drop)
	if caps := capSet(t, id); caps != 1<<5 {
		t.Errorf("drop ALL + add KILL: CapEff = %x, want only CAP_KILL (bit 5)", caps)
	}
}

func TestPrivilegedWorksWithoutEveryCapability(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-priv")
	cfg := containerConfig("priv", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	id := p.run(t, cfg)
	// Every capability the host has and Docker knows (Docker 20.10 knows
	// none past CAP_AUDIT_READ, bit 37), and none it lacks.
	hostBnd := hostCapBnd(t)
	classic := hostBnd & (1<<38 - 1)
	if caps := capSet(t, id); caps&^hostBnd != 0 || caps&classic != classic {
		t.Errorf("privileged CapEff = %x, want the host's bounding set %x (at least %x)", caps, hostBnd, classic)
	}
	if s := procStatus(t, id, "Seccomp"); s != "0" {
		t.Errorf("privileged container is under seccomp (mode %s)", s)
	}
	// Every host device, and the right to mount.
	if _, err := docker(t, "exec", id, "test", "-c", "/dev/kmsg"); err != nil {
		t.Errorf("a host device is missing in a privileged container")
	}
	if out, err := docker(t, "exec", id, "sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo ok"); err != nil || out != "ok" {
		t.Errorf("mount in a privileged container: %v %s", err, out)
	}
	// Nothing masked.
	if out, _ := docker(t, "exec", id, "sh", "-c", "grep -c ' /proc/kcore ' /proc/self/mountinfo"); out != "0" {
		t.Errorf("/proc/kcore is masked in a privileged container")
	}
}

func hostCapBnd(t *testing.T) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	t.Fatal("no CapBnd")
	return 0
}

func TestUsersAndGroups(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-user")
	cfg := containerConfig("ids", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		RunAsUser:          &runtimeapi.Int64Value{Value: 1234},
		RunAsGroup:         &runtimeapi.Int64Value{Value: 4321},
		SupplementalGroups: []int64{7777, 8888},
	}
	id := p.run(t, cfg)
	out := dockerExec(t, id, "id")
	for _, want := range []string{"uid=1234(app)", "gid=4321", "7777", "8888", "5555(extra)"} {
		if !strings.Contains(out, want) {
			t.Errorf("id = %q, want %s", out, want)
		}
	}
	st := containerStatus(t, berth, id)
	u := st.GetUser().GetLinux()
	if u.GetUid() != 1234 || u.GetGid() != 4321 || !containsInt(u.GetSupplementalGroups(), 7777) || !containsInt(u.GetSupplementalGroups(), 5555) {
		t.Errorf("status user = %v", u)
	}

	byName := containerConfig("byname", "sleep 3600")
	byName.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "app"}
	id = p.run(t, byName)
	if out := dockerExec(t, id, "id", "-u"); out != "1234" {
		t.Errorf("run_as_username app: uid %q", out)
	}
}

func containsInt(list []int64, v int64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func TestReadonlyRootfsAndNoNewPrivs(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-ro")
	cfg := containerConfig("ro", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true, NoNewPrivs: true}
	id := p.run(t, cfg)
	if out, err := docker(t, "exec", id, "touch", "/newfile"); err == nil || !strings.Contains(out, "Read-only file system") {
		t.Errorf("write to a read-only rootfs: %v %q", err, out)
	}
	if v := procStatus(t, id, "NoNewPrivs"); v != "1" {
		t.Errorf("NoNewPrivs = %s", v)
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-mask")
	cfg := containerConfig("mask", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		MaskedPaths:   []string{"/proc/kcore", "/etc/group"},
		ReadonlyPaths: []string{"/proc/sys", "/tmp"},
	}
	id := p.run(t, cfg)
	if out, _ := docker(t, "exec", id, "cat", "/etc/group"); out != "" {
		t.Errorf("masked /etc/group is readable: %q", out)
	}
	if out, err := docker(t, "exec", id, "touch", "/tmp/x"); err == nil {
		t.Errorf("read-only /tmp is writable: %q", out)
	}
}

func TestSeccompProfiles(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-seccomp")
	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	local := containerConfig("local", "sleep 3600")
	local.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
	}
	id := p.run(t, local)
	if out, err := docker(t, "exec", id, "mkdir", "/tmp/blocked"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("mkdir under a profile that blocks it: %v %q", err, out)
	}
	legacy := containerConfig("legacy", "sleep 3600")
	legacy.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/" + profile}
	id = p.run(t, legacy)
	if _, err := docker(t, "exec", id, "mkdir", "/tmp/blocked"); err == nil {
		t.Errorf("the deprecated seccomp_profile_path was not applied")
	}
	unconfined := containerConfig("unconfined", "sleep 3600")
	unconfined.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
	}
	if id := p.run(t, unconfined); procStatus(t, id, "Seccomp") != "0" {
		t.Errorf("Unconfined container has a seccomp filter")
	}
	def := containerConfig("default", "sleep 3600")
	def.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	}
	if id := p.run(t, def); procStatus(t, id, "Seccomp") != "2" {
		t.Errorf("RuntimeDefault container has no seccomp filter")
	}

	// CRI defines an absent profile (and an empty seccomp_profile_path) as
	// unconfined, as containerd and CRI-O run it: Docker's default profile
	// is only for RuntimeDefault. Read through ExecSync, as a CRI client
	// sees it.
	none := containerConfig("none", "sleep 3600")
	none.Linux.SecurityContext = nil
	empty := containerConfig("empty", "sleep 3600")
	empty.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 0}}
	for _, cfg := range []*runtimeapi.ContainerConfig{none, empty} {
		if mode := execStatus(t, p.run(t, cfg), "/proc/self/status", "Seccomp"); mode != "0" {
			t.Errorf("container %s names no seccomp profile: Seccomp %s, want 0 (unconfined)", cfg.Metadata.Name, mode)
		}
	}

	// The pause container: a pod that names no profile (p) runs it
	// unconfined, a RuntimeDefault pod (as kubelet always asks) under
	// Docker's default profile. A container in the pod's PID namespace
	// sees the pause process as PID 1.
	defPod := podConfig("sec-seccomp-default")
	defPod.LogDirectory = t.TempDir()
	defPod.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	}
	for _, tc := range []struct {
		pod  *pod
		want string
	}{
		{p, "0"},
		{&pod{b: berth, id: runPod(t, berth, defPod), cfg: defPod}, "2"},
	} {
		peek := containerConfig("peek", "sleep 3600")
		peek.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}
		id := tc.pod.run(t, peek)
		if cmd := execStatus(t, id, "/proc/1/cmdline", ""); !strings.Contains(cmd, "pause") {
			t.Fatalf("PID 1 of pod %s is %q, not the pause process", tc.pod.cfg.Metadata.Name, cmd)
		}
		if mode := execStatus(t, id, "/proc/1/status", "Seccomp"); mode != tc.want {
			t.Errorf("pause container of pod %s (seccomp %v): Seccomp %s, want %s", tc.pod.cfg.Metadata.Name, tc.pod.cfg.GetLinux().GetSecurityContext().GetSeccomp(), mode, tc.want)
		}
	}
}

// execStatus reads a file in a container through ExecSync and returns the
// value of one "field:" line in it, or the whole file when field is "".
func execStatus(t *testing.T, id, path, field string) string {
	t.Helper()
	res, err := execSync(t, berth, id, 10, "cat", path)
	if err != nil || res.GetExitCode() != 0 {
		t.Fatalf("ExecSync cat %s: %v, exit %d: %s", path, err, res.GetExitCode(), res.GetStderr())
	}
	if field == "" {
		return string(res.GetStdout())
	}
	for _, line := range strings.Split(string(res.GetStdout()), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in %s", field, path)
	return ""
}

func TestSELinuxAndAppArmorOptionsReachDocker(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "sec-labels")
	cfg := containerConfig("labels", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		SelinuxOptions: &runtimeapi.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"},
		Apparmor:       &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
	}
	// selinux_relabel asks Docker to relabel the host directory with the
	// container's private label: a legacy bind with Z where the daemon
	// labels containers (name=selinux in its security options); elsewhere
	// Docker would not relabel, and the mount is made as without it.
	selinux := slices.Contains(facts(t, "").securityOpts, "name=selinux")
	dir := t.TempDir()
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir, SelinuxRelabel: true}}
	id := p.create(t, cfg)
	opts, _ := docker(t, "inspect", "-f", "{{json .HostConfig.SecurityOpt}}", id)
	for _, want := range []string{"label=user:system_u", "label=type:container_t", "label=level:s0:c1,c2", "apparmor=unconfined"} {
		if !strings.Contains(opts, want) {
			t.Errorf("SecurityOpt %s lacks %s", opts, want)
		}
	}
	binds, _ := docker(t, "inspect", "-f", "{{json .HostConfig.Binds}}", id)
	switch {
	case selinux && binds != `["`+dir+`:/data:rw,rprivate,Z"]`:
		t.Errorf("binds = %s, want %s relabelled (Z)", binds, dir)
	case !selinux && strings.Contains(binds, "Z"):
		t.Errorf("binds = %s: relabelled on a daemon without SELinux", binds)
	}
	if src, _ := docker(t, "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}`, id); src != dir {
		t.Errorf("/data is mounted from %q, want %s", src, dir)
	}
}

func TestNamespaceSharing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ns-share")
	own := containerConfig("writer", "echo shared > /dev/shm/token; exec sleep 3600")
	own.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}
	writer := p.run(t, own)
	reader := p.run(t, containerConfig("reader", "sleep 3600"))
	eventually(t, 10e9, func() error {
		if out, _ := docker(t, "exec", reader, "cat", "/dev/shm/token"); out != "shared" {
			return errorf("IPC namespace (/dev/shm) not shared: %q", out)
		}
		return nil
	})
	// PID: POD sees the pause process; CONTAINER has its own PID 1.
	podPID := containerConfig("podpid", "sleep 3600")
	podPID.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}
	id := p.run(t, podPID)
	if out := dockerExec(t, id, "cat", "/proc/1/cmdline"); !strings.Contains(out, "/pause") {
		t.Errorf("PID 1 in a POD-namespace container = %q, want the pause process", out)
	}
	if out := dockerExec(t, writer, "cat", "/proc/1/cmdline"); strings.Contains(out, "/pause") {
		t.Errorf("a CONTAINER-namespace container sees the pause process as PID 1")
	}
	target := containerConfig("target", "sleep 3600")
	target.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: writer}}
	id = p.run(t, target)
	if out := dockerExec(t, id, "cat", "/proc/1/cmdline"); !strings.Contains(out, "sleep") {
		t.Errorf("TARGET container's PID 1 = %q, want the writer's shell", out)
	}
	// UTS and network: the pod's.
	if out := dockerExec(t, reader, "hostname"); out != p.cfg.Hostname {
		t.Errorf("hostname %q, want %q", out, p.cfg.Hostname)
	}
	ip := podStatus(t, berth, p.id).GetNetwork().GetIp()
	if out := dockerExec(t, reader, "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(out, ip+"/") {
		t.Errorf("container's eth0 = %q, want the pod IP %s", out, ip)
	}
	_ = ctx
}
