package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/test/framework"
)

// systemdNodeConfig is the KubeletConfiguration of TestSystemdNode: what a
// current production node runs, so kubelet's defaults are left alone where
// they matter here — failCgroupV1 (true: kubelet refuses cgroup v1),
// cgroupDriver (unset: kubelet takes it from Berth's RuntimeConfig),
// cgroupsPerQOS and cgroupRoot (kubepods.slice with its QoS slices under
// the root). Only the paths and ports are the run's own.
func systemdNodeConfig(o kubeletOptions) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: %[1]s
imageServiceEndpoint: %[1]s
staticPodPath: %[2]s
fileCheckFrequency: 5s
address: 127.0.0.1
port: %[3]d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: %[4]s
volumePluginDir: %[5]s
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
  imagefs.inodesFree: 1%%
`, o.RuntimeEndpoint, o.StaticPodPath, o.Port, o.PodLogsDir, o.VolumePluginDir)
}

// The QoS pods of TestSystemdNode, by the class kubelet must give them.
var qosPods = []struct {
	name  string
	class corev1.PodQOSClass
	res   corev1.ResourceRequirements
}{
	{"qos-guaranteed", corev1.PodQOSGuaranteed, corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}},
	{"qos-burstable", corev1.PodQOSBurstable, corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}},
	{"qos-besteffort", corev1.PodQOSBestEffort, corev1.ResourceRequirements{}},
}

// qosScript does a little work (CPU, and 8 MiB of anonymous memory held by
// the shell's variable) and then waits.
const qosScript = `x=$(head -c 8388608 /dev/zero | tr '\0' x); while :; do sleep 5; done`

// TestSystemdNode runs kubelet on a node of the kind Kubernetes expects now
// — cgroup v2 only, systemd as init, Docker on the systemd cgroup driver —
// with kubelet's defaults (systemdNodeConfig), a Guaranteed, a Burstable and
// a BestEffort pod, and checks that kubelet took the systemd driver from
// Berth, that each pod's cgroup is the systemd slice kubelet made for its
// class (kubepods-burstable-pod<uid>.slice, …) with the pod's containers
// inside, and that /stats/summary has CPU and memory for each pod. This
// host is no such node: make test-cgroupv2 runs it in a virtual machine
// (hack/vm/), and `make test-kubelet` leaves it out.
func TestSystemdNode(t *testing.T) {
	if !cgroups.IsV2() {
		t.Fatal("this test needs a cgroup v2 node (make test-cgroupv2 runs it in one)")
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Fatal("this test needs systemd as init (make test-cgroupv2 runs it on such a node)")
	}
	ctx := context.Background()
	bin := kubeletBinary(t)

	// Short: kubelet's socket paths under its root dir are limited.
	dir, err := os.MkdirTemp("", "bk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeping %s for inspection", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	net := framework.NewCNINetwork(t, framework.CNIOptions{})
	b := framework.StartBerth(t, framework.Options{Args: append([]string{"--log-level", "info"}, net.Args()...)})
	t.Cleanup(func() { sweepPods(t, b) })

	rc, err := b.Runtime.RuntimeConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := rc.GetLinux().GetCgroupDriver(); d != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("RuntimeConfig reports cgroup driver %v; this node's Docker uses systemd", d)
	}

	manifests := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, q := range qosPods {
		p := pod(q.name, corev1.RestartPolicyAlways, nil, with(shell("work", qosScript), func(c *corev1.Container) {
			c.Resources = q.res
		}))
		if err := writeManifest(manifests, p); err != nil {
			t.Fatal(err)
		}
	}
	nodeName := "berth-systemd-node"
	o := kubeletOptions{
		NodeName:        nodeName,
		RuntimeEndpoint: b.Endpoint,
		Port:            framework.FreePort(t),
		StaticPodPath:   manifests,
		PodLogsDir:      filepath.Join(dir, "pod-logs"),
		VolumePluginDir: filepath.Join(dir, "volume-plugins"),
	}
	e := &env{dir: dir, nodeName: nodeName, berth: b, net: net, opts: o}
	e.kubelet = startKubeletWith(t, bin, dir, nodeName, systemdNodeConfig(o))
	e.kc = e.waitForKubelet(t)

	// kubelet's default cgroupDriver is cgroupfs: systemd can only have
	// come from Berth.
	e.eventually(t, time.Minute, "kubelet logging the driver it took from the CRI", func() error {
		log := e.kubelet.Log()
		if !strings.Contains(log, "Using cgroup driver setting received from the CRI runtime") || !strings.Contains(log, `cgroupDriver="systemd"`) {
			return fmt.Errorf("not in kubelet's log")
		}
		return nil
	})

	for _, q := range qosPods {
		t.Run(string(q.class), func(t *testing.T) {
			cs := e.waitRunning(t, q.name, "work")
			p, err := e.pod(q.name)
			if err != nil {
				t.Fatal(err)
			}
			if p.Status.QOSClass != q.class {
				t.Errorf("QoS class %q, want %q", p.Status.QOSClass, q.class)
			}
			slice := podSlice(q.class, string(p.UID))
			if _, err := os.Stat(filepath.Join(cgroups.Root, slice)); err != nil {
				t.Errorf("the pod's slice: %v", err)
			}
			// The container runs in its own scope inside the pod's slice,
			// where Docker put it on Berth's word.
			pid := dockerPid(t, dockerID(cs.ContainerID))
			paths, err := cgroups.Paths(pid)
			if err != nil {
				t.Fatal(err)
			}
			if got := cgroups.Relative(filepath.Dir(paths[""])); got != slice {
				t.Errorf("the container's cgroup is %s, want a scope in %s", paths[""], slice)
			}
			if q.class == corev1.PodQOSGuaranteed {
				for file, want := range map[string]string{"memory.max": strconv.Itoa(64 << 20), "cpu.max": "20000 100000"} {
					if got := readCgroupFile(t, paths[""], file); got != want {
						t.Errorf("the guaranteed container's %s = %q, want %q", file, got, want)
					}
				}
				if got := readCgroupFile(t, filepath.Join(cgroups.Root, slice), "memory.max"); got != strconv.Itoa(64<<20) {
					t.Errorf("the guaranteed pod's slice memory.max = %q, want %d", got, 64<<20)
				}
			}
		})
	}

	e.eventually(t, 3*time.Minute, "/stats/summary with CPU and memory for every pod", func() error {
		s, err := e.kc.Summary(ctx)
		if err != nil {
			return err
		}
		pods := map[string]statsapi.PodStats{}
		for _, p := range s.Pods {
			pods[p.PodRef.Name] = p
		}
		for _, q := range qosPods {
			p, ok := pods[e.podName(q.name)]
			if !ok {
				return fmt.Errorf("pod %s not in the summary (%d pods)", q.name, len(s.Pods))
			}
			if p.CPU == nil || ptrVal(p.CPU.UsageCoreNanoSeconds) == 0 || ptrVal(p.CPU.UsageNanoCores) == 0 {
				return fmt.Errorf("pod %s: CPU %+v", q.name, p.CPU)
			}
			if p.Memory == nil || ptrVal(p.Memory.WorkingSetBytes) < 8<<20 {
				return fmt.Errorf("pod %s: memory %+v, want a working set of at least 8 MiB", q.name, p.Memory)
			}
			if len(p.Containers) != 1 || p.Containers[0].CPU == nil || ptrVal(p.Containers[0].CPU.UsageCoreNanoSeconds) == 0 ||
				p.Containers[0].Memory == nil || ptrVal(p.Containers[0].Memory.WorkingSetBytes) == 0 {
				return fmt.Errorf("pod %s: container stats %+v", q.name, p.Containers)
			}
			t.Logf("%s: %.3f cores, working set %d MiB", q.name, float64(ptrVal(p.CPU.UsageNanoCores))/1e9, ptrVal(p.Memory.WorkingSetBytes)>>20)
		}
		return nil
	})

	// Deleting the manifests removes the pods; kubelet removes their slices.
	for _, q := range qosPods {
		if err := os.Remove(filepath.Join(manifests, q.name+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
	e.eventually(t, 3*time.Minute, "the pods gone from Berth", func() error {
		sbs, err := b.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
		if err != nil {
			return err
		}
		if len(sbs) > 0 {
			return fmt.Errorf("%d pods still ready", len(sbs))
		}
		return nil
	})
}

// podSlice is the cgroup (relative to the root) kubelet's systemd driver
// gives a pod of class: kubepods.slice/kubepods-<class>.slice/
// kubepods-<class>-pod<uid>.slice, Guaranteed pods directly in
// kubepods.slice; systemd spells the uid's dashes as underscores.
func podSlice(class corev1.PodQOSClass, uid string) string {
	uid = strings.ReplaceAll(uid, "-", "_")
	if class == corev1.PodQOSGuaranteed {
		return "/kubepods.slice/kubepods-pod" + uid + ".slice"
	}
	c := strings.ToLower(string(class))
	return "/kubepods.slice/kubepods-" + c + ".slice/kubepods-" + c + "-pod" + uid + ".slice"
}

// dockerPid is the pid of a running container of the suite's Docker.
func dockerPid(t *testing.T, id string) int {
	t.Helper()
	cmd := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", id)
	cmd.Env = append(cmd.Environ(), "DOCKER_HOST="+framework.DockerHost())
	out, err := cmd.Output()
	pid, perr := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || perr != nil || pid <= 0 {
		t.Fatalf("pid of container %s: %q %v", id, out, err)
	}
	return pid
}

func readCgroupFile(t *testing.T, dir, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
