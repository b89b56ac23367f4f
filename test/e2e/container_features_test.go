package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// The tests here cover the CRI features that depend on what the Docker
// daemon can do: each runs on every engine and checks the feature works
// where the daemon has it and is refused, precisely, where it has not.

// daemonFacts is what the tests compare Berth's answers with, read from
// Docker directly.
type daemonFacts struct {
	api           string
	kernel        string
	defaultRT     string
	rroRuntimes   []string
	cdiSpecDirs   []string
	securityOpts  []string
	containerdIDs bool
}

func facts(t *testing.T, host string) daemonFacts {
	t.Helper()
	ctx := context.Background()
	dc := dockerClient(t, host)
	v, err := dc.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := dc.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info := res.Info
	f := daemonFacts{api: v.APIVersion, kernel: info.KernelVersion, defaultRT: info.DefaultRuntime, cdiSpecDirs: info.CDISpecDirs, securityOpts: info.SecurityOptions}
	if versions.GreaterThan(f.api, "1.56") {
		f.api = "1.56" // Berth's newest
	}
	for name, rt := range info.Runtimes {
		var feat struct {
			MountOptions []string `json:"mountOptions"`
		}
		if json.Unmarshal([]byte(rt.Status["org.opencontainers.runtime-spec.features"]), &feat) == nil && slices.Contains(feat.MountOptions, "rro") {
			f.rroRuntimes = append(f.rroRuntimes, name)
		}
	}
	return f
}

func (f daemonFacts) atLeast(api string) bool { return versions.GreaterThanOrEqualTo(f.api, api) }

func (f daemonFacts) kernelAtLeast(major, minor int) bool {
	parts := strings.SplitN(f.kernel, ".", 3)
	maj, _ := strconv.Atoi(parts[0])
	min := 0
	if len(parts) > 1 {
		min, _ = strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	return maj > major || maj == major && min >= minor
}

// rro is whether Docker can make a recursively read-only mount for a
// handler: API 1.44, mount_setattr (Linux 5.12) and a runtime whose OCI
// features list "rro".
func (f daemonFacts) rro(handler string) bool {
	if handler == "" {
		handler = f.defaultRT
	}
	return f.atLeast("1.44") && f.kernelAtLeast(5, 12) && slices.Contains(f.rroRuntimes, handler)
}

func TestStatusReportsTheFeaturesDockerHas(t *testing.T) {
	t.Parallel()
	f := facts(t, "")
	st, err := berth.Runtime.Status(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if got, want := h.GetFeatures().GetRecursiveReadOnlyMounts(), f.rro(h.Name); got != want {
			t.Errorf("handler %q: recursive_read_only_mounts = %v, want %v (API %s, kernel %s, runtimes with rro %v)", h.Name, got, want, f.api, f.kernel, f.rroRuntimes)
		}
		if h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q: user_namespaces = true on a daemon without Berth's runtime wrapper (berth-userns)", h.Name)
		}
	}
	// The engines tested here: Debian's 20.10 cannot, current Docker on
	// this kernel can, with its default runtime.
	if def := st.RuntimeHandlers[0]; f.atLeast("1.44") != def.GetFeatures().GetRecursiveReadOnlyMounts() {
		t.Errorf("default handler: recursive_read_only_mounts = %v on API %s", def.GetFeatures().GetRecursiveReadOnlyMounts(), f.api)
	}
	feat := st.GetFeatures()
	if !feat.GetSupplementalGroupsPolicy() || feat.GetMountOptions() || feat.GetUserNamespacesHostNetwork() {
		t.Errorf("runtime features = %+v, want supplemental_groups_policy only", feat)
	}
}

// submountedDir returns a directory with a tmpfs mounted on its "sub".
func submountedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "berth-e2e-sub", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", sub).Run() })
	return dir
}

// TestReadOnlyMountsRecursiveOrNot checks CRI's two read-only mounts, each
// with and without selinux_relabel: relabelling must not change how a mount
// is made where the daemon does not label containers (no "name=selinux" in
// its security options, as on this project's hosts), as containerd ignores
// it where SELinux is off; where it does, a relabelled mount is a legacy
// bind with Z, and recursive_read_only is refused with it.
func TestReadOnlyMountsRecursiveOrNot(t *testing.T) {
	t.Parallel()
	f := facts(t, "")
	selinux := slices.Contains(f.securityOpts, "name=selinux")
	dir := submountedDir(t)
	p := newPod(t, berth, "rro")

	for _, relabel := range []bool{false, true} {
		suffix := ""
		if relabel {
			suffix = "-relabel"
		}
		// CRI's readonly is not recursive: the submount stays writable, on
		// every Docker (Docker 25 made read-only binds recursive by
		// default).
		ro := containerConfig("ro"+suffix, "sleep 3600")
		ro.Mounts = []*runtimeapi.Mount{{ContainerPath: "/ro", HostPath: dir, Readonly: true, SelinuxRelabel: relabel}}
		id := p.run(t, ro)
		if out, err := docker(t, "exec", id, "touch", "/ro/x"); err == nil {
			t.Errorf("read-only mount (selinux_relabel %v) is writable: %s", relabel, out)
		}
		if selinux && relabel && f.atLeast("1.44") {
			// A relabelled mount is a legacy bind, which Docker 25 makes
			// recursively read-only; said in docs/containers.md.
			t.Logf("the daemon labels containers: a relabelled read-only mount is a legacy bind, recursive on API %s", f.api)
		} else if out, err := docker(t, "exec", id, "touch", "/ro/sub/x"); err != nil {
			t.Errorf("a submount of a (non-recursively) read-only mount (selinux_relabel %v) is not writable: %s", relabel, out)
		}

		rro := containerConfig("rro"+suffix, "sleep 3600")
		rro.Mounts = []*runtimeapi.Mount{{ContainerPath: "/rro", HostPath: dir, Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: relabel}}
		if !f.rro("") || selinux && relabel {
			want := "config.mounts[0].recursive_read_only: recursively read-only mounts need Docker 25 (API 1.44)"
			if f.rro("") {
				want = "config.mounts[0].recursive_read_only: cannot be combined with selinux_relabel"
			}
			_, err := berth.RuntimeClient.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: rro, SandboxConfig: p.cfg})
			wantCode(t, err, codes.FailedPrecondition, want)
			continue
		}
		id = p.run(t, rro)
		for _, path := range []string{"/rro/y", "/rro/sub/y"} {
			if out, err := docker(t, "exec", id, "touch", path); err == nil {
				t.Errorf("%s is writable in a recursively read-only mount (selinux_relabel %v): %s", path, relabel, out)
			}
		}
		if m := containerStatus(t, berth, id).GetMounts(); len(m) != 1 || !m[0].GetRecursiveReadOnly() || m[0].GetSelinuxRelabel() != relabel {
			t.Errorf("status mounts = %v", m)
		}
	}
}

func TestImageVolumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := facts(t, "")
	img, err := berth.Images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: framework.TestImage}, false)
	if err != nil || img.GetImage() == nil {
		t.Fatalf("ImageStatus(%s): %v", framework.TestImage, err)
	}
	imageID := img.GetImage().GetId() // what kubelet passes: PullImage's image_ref
	p := newPod(t, berth, "imgvol")
	cfg := containerConfig("vol", "sleep 3600")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/image", Image: &runtimeapi.ImageSpec{Image: imageID}},
		{ContainerPath: "/image-etc", Image: &runtimeapi.ImageSpec{Image: imageID}, ImageSubPath: "etc", Readonly: true},
	}
	if !f.atLeast("1.48") {
		_, err := berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
		wantCode(t, err, codes.FailedPrecondition, "config.mounts[0].image: mounting an image needs Docker 28 (API 1.48)")
		return
	}
	id := p.run(t, cfg)
	if out := dockerExec(t, id, "sh", "-c", "grep ^app: /image/etc/passwd; grep ^app: /image-etc/passwd"); strings.Count(out, "app:x:1234") != 2 {
		t.Errorf("image volume contents = %q", out)
	}
	if out, err := docker(t, "exec", id, "touch", "/image/x"); err == nil {
		t.Errorf("an image volume is writable: %s", out)
	}
	m := containerStatus(t, berth, id).GetMounts()
	if len(m) != 2 || m[0].GetImage().GetImage() != imageID || m[1].GetImageSubPath() != "etc" {
		t.Errorf("status mounts = %v", m)
	}

	// A sub path the image does not have fails the create, not the start.
	missing := containerConfig("missing", "true")
	missing.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", Image: &runtimeapi.ImageSpec{Image: imageID}, ImageSubPath: "no/such/dir"}}
	_, err = berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: missing, SandboxConfig: p.cfg})
	wantCode(t, err, codes.NotFound, `config.mounts[0].image_sub_path: "no/such/dir"`)
	if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=k8s_missing_imgvol"); out != "" {
		t.Errorf("a refused create left a container: %s", out)
	}
}

// dockerAt runs the docker CLI against the daemon at host.
func dockerAt(t *testing.T, host string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(cmd.Environ(), "DOCKER_HOST="+host)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// berthOnPrivateDocker starts a private Docker daemon of the suite's engine with
// extra flags, loads the test image into it, and starts a Berth on it in
// Docker-bridge mode (no CNI needed).
func berthOnPrivateDocker(t *testing.T, dockerdArgs ...string) (*framework.Dockerd, *framework.Berth) {
	t.Helper()
	d := framework.StartDockerd(t, "", dockerdArgs...)
	d.LoadImage(t, framework.TestImage)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", d.Host, "--network-plugin="}})
	return d, b
}

// runIn runs a pod and a container on b and returns the container id.
func runIn(t *testing.T, b *framework.Berth, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	pod.LogDirectory = t.TempDir()
	podID := runPod(t, b, pod)
	id, err := b.Runtime.CreateContainer(ctx, podID, cfg, pod)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	t.Cleanup(func() { _ = b.Runtime.RemoveContainer(ctx, id) })
	if err := b.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return id
}

const cdiSpec = `cdiVersion: "0.6.0"
kind: "berth.test/%s"
devices:
- name: dev0
  containerEdits:
    env:
    - BERTH_FAKE_DEVICE=dev0
    deviceNodes:
    - path: /dev/berth-fake0
      hostPath: /dev/null
containerEdits:
  env:
  - BERTH_FAKE_VENDOR=%s
`

func TestCDIDevices(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := facts(t, "")
	kind := framework.UniqueName("fake")
	cfg := containerConfig("cdi", "env >/tmp/env; exec sleep 3600")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/" + kind + "=dev0"}}
	p := newPod(t, berth, "cdi")
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg}
	if !f.atLeast("1.44") {
		_, err := berth.RuntimeClient.CreateContainer(ctx, req)
		wantCode(t, err, codes.FailedPrecondition, "config.CDI_devices: CDI devices need Docker 25 (API 1.44)")
		return
	}
	// The suite's daemon has CDI on (current Docker: /etc/cdi and
	// /var/run/cdi) but no spec for this device.
	_, err := berth.RuntimeClient.CreateContainer(ctx, req)
	wantCode(t, err, codes.FailedPrecondition, fmt.Sprintf("config.CDI_devices[0].name: %q is not a CDI device Docker knows", cfg.CDIDevices[0].Name))

	// A daemon with a spec directory holding a fake device: an env
	// variable and /dev/null under another name.
	specs := t.TempDir()
	if err := os.WriteFile(filepath.Join(specs, kind+".yaml"), fmt.Appendf(nil, cdiSpec, kind, kind), 0o644); err != nil {
		t.Fatal(err)
	}
	d, b := berthOnPrivateDocker(t, "--cdi-spec-dir", specs)
	id := runIn(t, b, podConfig("cdi"), cfg)
	// The edits are in the container process's environment (not in
	// Docker's config, which docker exec uses).
	out, err := dockerAt(t, d.Host, "exec", id, "sh", "-c", "grep ^BERTH_FAKE_ /tmp/env | sort; test -c /dev/berth-fake0 && echo char")
	if err != nil || out != "BERTH_FAKE_DEVICE=dev0\nBERTH_FAKE_VENDOR="+kind+"\nchar" {
		t.Errorf("CDI edits in the container: %q %v", out, err)
	}
	if st, err := b.Runtime.ContainerStatus(ctx, id, false); err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("status %v %v", st, err)
	}
}

// dockremapRange reads the subordinate uid range Docker's
// --userns-remap=default uses (hack/setup.sh adds it).
func dockremapRange(t *testing.T) (start, length uint32) {
	t.Helper()
	data, err := os.ReadFile("/etc/subuid")
	if err != nil {
		t.Fatalf("%v (hack/setup.sh adds the dockremap user and its range)", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) == 3 && f[0] == "dockremap" {
			s, err1 := strconv.ParseUint(f[1], 10, 32)
			l, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 == nil && err2 == nil {
				return uint32(s), uint32(l)
			}
		}
	}
	t.Fatal("/etc/subuid has no range for dockremap (hack/setup.sh adds it)")
	return 0, 0
}

func usernsPod(name string, mode runtimeapi.NamespaceMode, hostID, length uint32) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	var m []*runtimeapi.IDMapping
	if length > 0 {
		m = []*runtimeapi.IDMapping{{HostId: hostID, ContainerId: 0, Length: length}}
	}
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: mode, Uids: m, Gids: m}}}
	return cfg
}

func usernsContainer(mode runtimeapi.NamespaceMode) *runtimeapi.ContainerConfig {
	cfg := containerConfig("u", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: mode}}}
	return cfg
}

func TestUserNamespaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start, length := dockremapRange(t)

	// Without remapping (the suite's daemons), a pod cannot have one.
	_, err := berth.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPod("userns-off", runtimeapi.NamespaceMode_POD, start, length)})
	wantCode(t, err, codes.FailedPrecondition, "userns_options.mode: POD: Docker has user namespaces only as a daemon-wide remapping (dockerd --userns-remap)")

	d, b := berthOnPrivateDocker(t, "--userns-remap=default")
	st, err := b.Runtime.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q reports user_namespaces on a remapping daemon: it cannot honour kubelet's per-pod mappings", h.Name)
		}
	}
	uidMap := func(id string) string {
		out, err := dockerAt(t, d.Host, "exec", id, "cat", "/proc/self/uid_map")
		if err != nil {
			t.Fatalf("uid_map: %v %s", err, out)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	// hostUsers: true runs in the host's user namespace, remapping or not.
	if got := uidMap(runIn(t, b, usernsPod("userns-host", runtimeapi.NamespaceMode_NODE, 0, 0), usernsContainer(runtimeapi.NamespaceMode_NODE))); got != "0 0 4294967295" {
		t.Errorf("a NODE pod's uid_map = %q, want the host's", got)
	}
	// hostUsers: false with the daemon's mapping gets it.
	want := fmt.Sprintf("0 %d %d", start, length)
	if got := uidMap(runIn(t, b, usernsPod("userns-pod", runtimeapi.NamespaceMode_POD, start, length), usernsContainer(runtimeapi.NamespaceMode_POD))); got != want {
		t.Errorf("a POD pod's uid_map = %q, want %q", got, want)
	}
	// Any other mapping is refused, and leaves nothing behind.
	bad := usernsPod("userns-bad", runtimeapi.NamespaceMode_POD, start+length, length)
	_, err = b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: bad})
	wantCode(t, err, codes.FailedPrecondition, fmt.Sprintf("uids: the pod asks for 0-%d → host %d-%d, but Docker maps every container's uids as 0-%d → host %d-%d",
		length-1, start+length, start+2*length-1, length-1, start, start+length-1))
	if out, _ := dockerAt(t, d.Host, "ps", "-a", "-q", "--filter", "name=userns-bad"); out != "" {
		t.Errorf("a refused pod left containers: %s", out)
	}
}

func TestSupplementalGroupsPolicy(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "groups")
	// The test image's /etc/group puts app (1234) in extra (5555).
	for _, tc := range []struct {
		name   string
		policy runtimeapi.SupplementalGroupsPolicy
		group  *runtimeapi.Int64Value
		want   string
	}{
		{"merge", runtimeapi.SupplementalGroupsPolicy_Merge, nil, "uid=1234 gid=1234 groups=1234,5555,7777"},
		{"merge-group", runtimeapi.SupplementalGroupsPolicy_Merge, &runtimeapi.Int64Value{Value: 4321}, "uid=1234 gid=4321 groups=4321,5555,7777"},
		{"strict", runtimeapi.SupplementalGroupsPolicy_Strict, nil, "uid=1234 gid=1234 groups=1234,7777"},
		{"strict-group", runtimeapi.SupplementalGroupsPolicy_Strict, &runtimeapi.Int64Value{Value: 4321}, "uid=1234 gid=4321 groups=4321,7777"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := containerConfig(tc.name, "sleep 3600")
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: 1234}, RunAsGroup: tc.group, SupplementalGroups: []int64{7777},
				SupplementalGroupsPolicy: tc.policy,
			}
			id := p.run(t, cfg)
			if got := dockerExec(t, id, "sh", "-c", `echo uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' '\n' | sort -n | paste -sd, -)`); got != tc.want {
				t.Errorf("ids = %q, want %q", got, tc.want)
			}
			u := containerStatus(t, berth, id).GetUser().GetLinux()
			if slices.Contains(u.GetSupplementalGroups(), 5555) == (tc.policy == runtimeapi.SupplementalGroupsPolicy_Strict) {
				t.Errorf("status user = %v", u)
			}
		})
	}
}

func TestMountOptionsAreRefused(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "mntopts")
	cfg := containerConfig("opts", "true")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), MountOptions: []string{"noexec", "nosuid"}}}
	_, err := berth.RuntimeClient.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	wantCode(t, err, codes.FailedPrecondition, "config.mounts[0].mount_options: noexec,nosuid: Docker's API cannot pass mount options")
}
