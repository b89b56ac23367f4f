package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"

	"github.com/berth-cri/berth/test/framework"
)

// The pods of TestUserNamespacePod: two, so that kubelet must give them
// distinct ranges.
const (
	modeUserns = "userns" // the run's name

	podUsernsA = "userns-a"
	podUsernsB = "userns-b"
)

// usernsScript writes, as the pod's root, into a hostPath and an emptyDir
// (kubelet id-maps every mount of such a pod) and into its own root
// filesystem, then waits.
const usernsScript = `echo from-userns-pod > /host/$POD_NAME && echo scratch > /scratch/f && ` +
	`echo rootfs > /rootfs-write && exec sleep 3600`

// usernsPods are two pods with hostUsers: false, each with a hostPath and
// an emptyDir.
func usernsPods(ps podSet) []*corev1.Pod {
	dirType := corev1.HostPathDirectory
	var pods []*corev1.Pod
	for _, name := range []string{podUsernsA, podUsernsB} {
		p := pod(name, corev1.RestartPolicyAlways, []corev1.Volume{
			{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: ps.HostDir, Type: &dirType}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}, with(shell("root", usernsScript), func(c *corev1.Container) {
			c.VolumeMounts = []corev1.VolumeMount{{Name: "host", MountPath: "/host"}, {Name: "scratch", MountPath: "/scratch"}}
			c.Env = []corev1.EnvVar{{Name: "POD_NAME", Value: name}}
		}))
		no := false
		p.Spec.HostUsers = &no
		pods = append(pods, p)
	}
	return pods
}

// The checks of TestUserNamespacePod, in order.
var usernsChecks = []check{
	{name: "userns-runtime-offers", fn: checkUsernsOffered},
	{name: "userns-pods-running", fn: checkUsernsRunning},
	{name: "userns-kubelet-ranges", fn: checkUsernsRanges},
	{name: "userns-root-owns-rootfs", fn: checkUsernsRootfs},
	{name: "userns-volumes-idmapped", fn: checkUsernsVolumes},
	{name: "delete-manifests-cleans-up", fn: checkDelete},
	{name: "host-restored", fn: checkHostRestored},
}

// TestUserNamespacePod runs pods with hostUsers: false under kubelet, on a
// private daemon with Berth's OCI runtime wrapper registered as
// berth-userns (docs/containers.md, "User namespaces"): kubelet picks each
// pod's range and sends it in userns_options; the pods must run in it.
// The wrapper needs Docker 24 or newer, so `make test-kubelet` runs this
// test on the current engine (hack/setup-docker-current.sh env).
func TestUserNamespacePod(t *testing.T) {
	framework.LockKubeletHost(t, "kubelet")
	bin := kubeletBinary(t)
	d, dc := startSuiteDocker(t, framework.UsernsWrapperArgs(t)...)
	t.Cleanup(printSummary)
	runMode(t, mode{name: modeUserns, pods: usernsPods, checks: usernsChecks}, bin, d, dc)
}

// checkUsernsOffered: Berth reports user namespaces for the default
// handler, which kubelet requires before it sends a pod's mappings.
func checkUsernsOffered(t *testing.T, e *env) {
	st, err := e.berth.Runtime.Status(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if h.Name == "" && h.GetFeatures().GetUserNamespaces() {
			return
		}
	}
	v, _ := e.dc.ServerVersion(context.Background(), client.ServerVersionOptions{})
	t.Fatalf("Berth does not report user_namespaces for the default handler on Docker %s (API %s): the wrapper needs Docker 24 or newer; "+
		"make test-kubelet runs this test on the current engine (eval \"$(hack/setup-docker-current.sh env)\")", v.Version, v.APIVersion)
}

func checkUsernsRunning(t *testing.T, e *env) {
	for _, name := range []string{podUsernsA, podUsernsB} {
		e.waitRunning(t, name, "root")
	}
}

// usernsRange reads a pod's uid and gid maps through kubelet's /run
// (ExecSync) and returns the host ID its root maps to.
func (e *env) usernsRange(t *testing.T, name string) uint32 {
	t.Helper()
	ctx := context.Background()
	var maps [2]string
	for i, file := range []string{"/proc/self/uid_map", "/proc/self/gid_map"} {
		out, err := e.kc.Run(ctx, namespace, e.podName(name), "root", "cat "+file)
		if err != nil {
			t.Fatalf("%s: /run cat %s: %v", name, file, err)
		}
		maps[i] = strings.Join(strings.Fields(out), " ")
	}
	if maps[0] != maps[1] {
		t.Errorf("%s: uid_map %q and gid_map %q differ; kubelet gives one range for both", name, maps[0], maps[1])
	}
	f := strings.Fields(maps[0])
	if len(f) != 3 || f[0] != "0" || f[2] != "65536" {
		t.Fatalf("%s: uid_map %q, want one line mapping 0 to a host range of 65536 IDs", name, maps[0])
	}
	host, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	// kubelet's ranges start past the host's first 65536 IDs, at
	// multiples of 65536 (pkg/kubelet/userns).
	if host < 65536 || host%65536 != 0 {
		t.Errorf("%s: root maps to host ID %d, not a range kubelet gives", name, host)
	}
	return uint32(host)
}

// checkUsernsRanges: each pod's root is the range kubelet picked, the two
// ranges differ, and on the host the container's processes run as it.
func checkUsernsRanges(t *testing.T, e *env) {
	ctx := context.Background()
	a, b := e.usernsRange(t, podUsernsA), e.usernsRange(t, podUsernsB)
	t.Logf("kubelet gave %s host IDs %d-%d and %s %d-%d", podUsernsA, a, a+65535, podUsernsB, b, b+65535)
	if a == b {
		t.Errorf("both pods' root maps to host ID %d", a)
	}
	for name, host := range map[string]uint32{podUsernsA: a, podUsernsB: b} {
		_, cs, err := e.containerStatus(name, "root")
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.dc.ContainerInspect(ctx, dockerID(cs.ContainerID), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", res.Container.State.Pid))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("Uid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d", host)
		if !strings.Contains(string(status), want) {
			t.Errorf("%s: the container's process on the host is not uid %d:\n%s", name, host, status)
		}
	}
}

// checkUsernsRootfs: root inside owns its root filesystem and wrote to it.
func checkUsernsRootfs(t *testing.T, e *env) {
	out, err := e.kc.Run(context.Background(), namespace, e.podName(podUsernsA), "root", "stat -c %u:%g / /bin/sh /rootfs-write")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "0:0 0:0 0:0" {
		t.Errorf("owners of /, /bin/sh and the file root wrote = %q, want root's", out)
	}
}

// checkUsernsVolumes: kubelet sends every mount of the pod with its
// mappings, so the files root wrote in the hostPath and the emptyDir are
// the host's root's, not the pod's host IDs.
func checkUsernsVolumes(t *testing.T, e *env) {
	for _, name := range []string{podUsernsA, podUsernsB} {
		p, err := e.pod(name)
		if err != nil {
			t.Fatal(err)
		}
		paths := []string{
			filepath.Join(e.hostDir, name),
			filepath.Join(e.kubelet.RootDir, "pods", string(p.UID), "volumes", "kubernetes.io~empty-dir", "scratch", "f"),
		}
		for _, path := range paths {
			var fi os.FileInfo
			e.eventually(t, time.Minute, name+" wrote "+path, func() error {
				fi, err = os.Stat(path)
				return err
			})
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 0 || st.Gid != 0 {
				t.Errorf("%s: %s is owned by %d:%d on the host, want 0:0 (an id-mapped mount)", name, path, st.Uid, st.Gid)
			}
		}
	}
}
