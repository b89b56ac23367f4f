package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// Host ID ranges for the pods of these tests, as kubelet picks them
// (multiples of 65536), far from the dockremap range.
const (
	usernsRangeA  = 1 << 30
	usernsRangeB  = 1<<30 + 65536
	usernsRangeC  = 1<<30 + 2*65536
	usernsPodSize = 65536
)

// berthWithUsernsWrapper starts a private daemon of the suite's engine
// with Berth's OCI runtime wrapper registered as berth-userns, loads the
// test image, and starts a Berth on it.
func berthWithUsernsWrapper(t *testing.T) (*framework.Dockerd, *framework.Berth) {
	t.Helper()
	return berthOnPrivateDocker(t, framework.UsernsWrapperArgs(t)...)
}

// usernsPodIn runs a pod with kubelet's form of a user namespace (mode
// POD, one mapping of 65536 IDs from host) on b.
func usernsPodIn(t *testing.T, b *framework.Berth, name string, host uint32) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	cfg := usernsPod(name, runtimeapi.NamespaceMode_POD, host, usernsPodSize)
	cfg.LogDirectory = t.TempDir()
	return runPod(t, b, cfg), cfg
}

// usernsMounts are a container's volumes as kubelet gives them to a pod
// with a user namespace: with the pod's mappings (id-mapped), and one
// without (plain), which shows the pod's host IDs.
func usernsMounts(host uint32, idmapped, plain string) []*runtimeapi.Mount {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: usernsPodSize}}
	return []*runtimeapi.Mount{
		{ContainerPath: "/idmapped", HostPath: idmapped, UidMappings: m, GidMappings: m},
		{ContainerPath: "/plain", HostPath: plain},
	}
}

func TestUserNamespacesThroughTheWrapper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := facts(t, "")
	d, b := berthWithUsernsWrapper(t)
	st, err := b.Runtime.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	supported := map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		supported[h.Name] = h.GetFeatures().GetUserNamespaces()
	}

	if !f.atLeast("1.43") {
		// Docker 20.10: the wrapper cannot be told what to do (no
		// annotations), so nothing offers user namespaces and a pod
		// asking for one is refused, precisely.
		for name, ok := range supported {
			if ok {
				t.Errorf("handler %q reports user_namespaces on API %s", name, f.api)
			}
		}
		_, err := b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPod("userns-old", runtimeapi.NamespaceMode_POD, usernsRangeA, usernsPodSize)})
		wantCode(t, err, codes.FailedPrecondition, fmt.Sprintf("userns_options.mode: POD: Docker has user namespaces only as a daemon-wide remapping (dockerd --userns-remap), which this Docker does not use, "+
			"and Berth's runtime wrapper cannot run it: Berth's runtime wrapper needs Docker 24 (API 1.43) or newer, which passes annotations to the runtime; this Docker speaks API %s", f.api))
		return
	}
	if !supported[""] || !supported["berth-userns"] || supported[f.defaultRT] {
		t.Errorf("user_namespaces per handler = %v, want the default handler and berth-userns only", supported)
	}

	idmapped, plain := t.TempDir(), t.TempDir()
	// The pod's root is host ID usernsRangeA on a plain volume: give it
	// a directory it can write to.
	if err := os.Chmod(plain, 0o777); err != nil {
		t.Fatal(err)
	}
	podA, cfgA := usernsPodIn(t, b, "userns-a", usernsRangeA)
	ctr := usernsContainer(runtimeapi.NamespaceMode_POD)
	ctr.Mounts = usernsMounts(usernsRangeA, idmapped, plain)
	idA := createAndStart(t, b, podA, cfgA, ctr)
	exec := func(id string, script string) string {
		t.Helper()
		out, err := dockerAt(t, d.Host, "exec", id, "sh", "-c", script)
		if err != nil {
			t.Fatalf("exec %q: %v: %s", script, err, out)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	want := fmt.Sprintf("0 %d %d", usernsRangeA, usernsPodSize)
	if got := exec(idA, "cat /proc/self/uid_map"); got != want {
		t.Errorf("uid_map = %q, want %q", got, want)
	}
	if got := exec(idA, "cat /proc/self/gid_map"); got != want {
		t.Errorf("gid_map = %q, want %q", got, want)
	}
	// Root inside owns its root filesystem and writes to it.
	if got := exec(idA, "stat -c %u:%g / /bin/sh /etc; touch /rootfs-write && stat -c %u:%g /rootfs-write"); got != "0:0 0:0 0:0 0:0" {
		t.Errorf("owners of /, /bin/sh, /etc, a new file = %q, want root's", got)
	}
	// Volumes: id-mapped, a file root writes is the host's root's; plain,
	// it is the pod's host IDs.
	exec(idA, "touch /idmapped/f /plain/f")
	for _, c := range []struct {
		path string
		uid  uint32
	}{{filepath.Join(idmapped, "f"), 0}, {filepath.Join(plain, "f"), usernsRangeA}} {
		var fi os.FileInfo
		if fi, err = os.Stat(c.path); err != nil {
			t.Fatal(err)
		}
		if st := fileOwner(fi); st != [2]uint32{c.uid, c.uid} {
			t.Errorf("%s is owned by %v on the host, want %d:%d", c.path, st, c.uid, c.uid)
		}
	}
	if got := exec(idA, "stat -c %u /idmapped /plain"); got != fmt.Sprintf("0 %d", 65534) {
		t.Errorf("owners inside of the id-mapped and the plain volume = %q, want 0 and the overflow ID", got)
	}

	// The statuses say so.
	ps, err := b.Runtime.PodSandboxStatus(ctx, podA, false)
	if err != nil {
		t.Fatal(err)
	}
	u := ps.GetStatus().GetLinux().GetNamespaces().GetOptions().GetUsernsOptions()
	if u.GetMode() != runtimeapi.NamespaceMode_POD || len(u.GetUids()) != 1 || u.GetUids()[0].GetHostId() != usernsRangeA || u.GetGids()[0].GetLength() != usernsPodSize {
		t.Errorf("PodSandboxStatus userns_options = %v", u)
	}
	cs := containerStatus(t, b, idA)
	for _, m := range cs.GetMounts() {
		if mapped := len(m.GetUidMappings()) == 1 && m.GetUidMappings()[0].GetHostId() == usernsRangeA; mapped != (m.GetContainerPath() == "/idmapped") {
			t.Errorf("ContainerStatus mount %s: uid mappings %v", m.GetContainerPath(), m.GetUidMappings())
		}
	}

	// A second pod gets its own, disjoint range and namespace.
	podB, cfgB := usernsPodIn(t, b, "userns-b", usernsRangeB)
	idB := createAndStart(t, b, podB, cfgB, usernsContainer(runtimeapi.NamespaceMode_POD))
	if got, want := exec(idB, "cat /proc/self/uid_map"), fmt.Sprintf("0 %d %d", usernsRangeB, usernsPodSize); got != want {
		t.Errorf("second pod's uid_map = %q, want %q", got, want)
	}
	if a, b := exec(idA, "readlink /proc/self/ns/user"), exec(idB, "readlink /proc/self/ns/user"); a == b {
		t.Errorf("both pods run in user namespace %s", a)
	}

	// The wrapper fails closed: a container whose user namespace it
	// cannot apply does not run at all (its command would leave a mark).
	t.Run("fails closed", func(t *testing.T) {
		marks := t.TempDir()
		plainPause, err := dockerAt(t, d.Host, "run", "-d", "--network", "none", framework.TestImage, "sleep", "3600")
		if err != nil {
			t.Fatalf("docker run: %v: %s", err, plainPause)
		}
		t.Cleanup(func() { _, _ = dockerAt(t, d.Host, "rm", "-f", plainPause) })
		for _, tc := range []struct {
			name string
			args []string
			msg  string
		}{
			{"bad mapping", []string{"--annotation", "io.berth.userns.uids=0:1", "--annotation", "io.berth.userns.gids=0:1:1", "--annotation", "io.berth.userns.role=sandbox"},
				"annotation io.berth.userns.uids"},
			{"container outside a pod", []string{"--annotation", "io.berth.userns.uids=0:1073741824:65536", "--annotation", "io.berth.userns.gids=0:1073741824:65536", "--annotation", "io.berth.userns.role=container", "--network", "none"},
				"does not join its pause container's network namespace"},
			{"container joining a pod in the host's user namespace", []string{"--annotation", "io.berth.userns.uids=0:1073741824:65536", "--annotation", "io.berth.userns.gids=0:1073741824:65536", "--annotation", "io.berth.userns.role=container", "--network", "container:" + plainPause},
				"has uid_map [0 0 4294967295], not the pod's [0 1073741824 65536]"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mark := "/m/" + strings.ReplaceAll(tc.name, " ", "-")
				args := append([]string{"run", "--rm", "--runtime", "berth-userns", "-v", marks + ":/m"}, tc.args...)
				out, err := dockerAt(t, d.Host, append(args, framework.TestImage, "touch", mark)...)
				if err == nil || !strings.Contains(out, "berth oci-runtime: ") || !strings.Contains(out, tc.msg) {
					t.Errorf("docker run = %v: %s, want the wrapper's refusal %q", err, out, tc.msg)
				}
				if _, err := os.Stat(filepath.Join(marks, filepath.Base(mark))); err == nil {
					t.Errorf("the container ran")
				}
			})
		}
	})

	// Nothing lives in Berth's memory: killed and restarted, it runs
	// another container in the pod's user namespace.
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	second := usernsContainer(runtimeapi.NamespaceMode_POD)
	second.Metadata.Name = "after-restart"
	idA2 := createAndStart(t, b, podA, cfgA, second)
	if a, a2 := exec(idA, "readlink /proc/self/ns/user"), exec(idA2, "readlink /proc/self/ns/user"); a != a2 {
		t.Errorf("after a Berth restart a container of the pod runs in user namespace %s, not the pod's %s", a2, a)
	}

	// What the wrapper mounted goes with the container.
	if err := b.Runtime.StopContainer(ctx, idA, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Runtime.RemoveContainer(ctx, idA); err != nil {
		t.Fatal(err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), idA) {
		t.Errorf("a mount of the removed container %s is left:\n%s", idA, grepLines(string(mi), idA))
	}
}

// TestUserNamespacesRefusedAsTheCRISays runs the CRI's error cases
// against a Berth that can run user namespaces: each is refused before
// anything is created.
func TestUserNamespacesRefusedAsTheCRISays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := func(container, host, length uint32) *runtimeapi.IDMapping {
		return &runtimeapi.IDMapping{ContainerId: container, HostId: host, Length: length}
	}
	one := []*runtimeapi.IDMapping{m(0, usernsRangeC, usernsPodSize)}
	for _, tc := range []struct {
		name string
		u    *runtimeapi.UserNamespace
		msg  string
	}{
		{"container mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER, Uids: one, Gids: one}, "userns_options.mode: CONTAINER is not supported for a pod"},
		{"target mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET, Uids: one, Gids: one}, "userns_options.mode: TARGET is not supported for a pod"},
		{"two uid mappings", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(0, usernsRangeC, 10), m(10, usernsRangeC+10, 10)}, Gids: one},
			"userns_options.uids: a pod's user namespace needs exactly one mapping, not 2"},
		{"no gid mapping", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one}, "userns_options.gids: a pod's user namespace needs exactly one mapping, not 0"},
		{"root unmapped", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(1, usernsRangeC, usernsPodSize)}, Gids: one},
			"userns_options.uids[0].container_id: is 1: the mapping must map ID 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig("userns-refused")
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.u}}
			_, err := berth.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			wantCode(t, err, codes.InvalidArgument, tc.msg)
		})
	}
	// A container cannot have a user namespace of its own.
	p := newPod(t, berth, "userns-ctr-mode")
	cfg := containerConfig("own", "sleep 3600")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}}
	_, err := berth.RuntimeClient.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	wantCode(t, err, codes.FailedPrecondition, "userns_options.mode: CONTAINER: Docker cannot give a container a user namespace of its own")
}

// createAndStart creates and starts a container in a pod of b; it is
// removed when the test ends.
func createAndStart(t *testing.T, b *framework.Berth, podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
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

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// fileOwner is a file's uid and gid on the host.
func fileOwner(fi os.FileInfo) [2]uint32 {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]uint32{^uint32(0), ^uint32(0)}
	}
	return [2]uint32{st.Uid, st.Gid}
}

// TestUserNamespacesNeedTheWrapper: a runtime registered as berth-userns
// that is not Berth's wrapper (here runc itself, which would ignore the
// annotations and run the pod in the host's user namespace) is not used.
func TestUserNamespacesNeedTheWrapper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := facts(t, "")
	runc, err := framework.EngineRunc()
	if err != nil {
		t.Fatal(err)
	}
	_, b := berthOnPrivateDocker(t, "--add-runtime", "berth-userns="+runc)
	st, err := b.Runtime.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q reports user_namespaces with runc registered as berth-userns", h.Name)
		}
	}
	why := fmt.Sprintf("the runtime berth-userns (%s) is not Berth's OCI runtime wrapper", runc)
	if !f.atLeast("1.43") {
		why = "Berth's runtime wrapper needs Docker 24 (API 1.43) or newer"
	}
	_, err = b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPod("userns-runc", runtimeapi.NamespaceMode_POD, usernsRangeC, usernsPodSize)})
	wantCode(t, err, codes.FailedPrecondition, why)
}
