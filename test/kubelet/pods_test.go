package kubelet

import (
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The suite's static pods. Each is named <pod>-<node> by kubelet.
const (
	namespace = "berth-kubelet"
	image     = "berth-test/busybox:latest"

	podLogger     = "logger"     // writes numbered lines forever (logs, rotation, stats)
	podGuaranteed = "guaranteed" // requests = limits; reports its cgroup limits from inside
	podRestart    = "restart"    // exits 3 once, then runs
	podLiveness   = "liveness"   // unhealthy once (exec probe), then healthy
	podOnFailure  = "onfailure"  // restartPolicy OnFailure: fails once, then succeeds
	podInit       = "init"       // an init container prepares a file for the main one
	podHostPort   = "hostport"   // an HTTP server on a hostPort
	podVolumes    = "volumes"    // hostPath and emptyDir; also the exec target
	podAttach     = "attach"     // echoes its stdin, for attach
	podVictim     = "victim"     // killed behind kubelet's back
)

// attemptCounter counts the container's starts in an emptyDir mounted at
// /state (an emptyDir outlives container restarts) and prints the count.
const attemptCounter = `n=$(( $(cat /state/n 2>/dev/null || echo 0) + 1 )); echo $n > /state/n; echo "attempt $n"; `

// loggerScript prints a numbered line every 50 ms on stdout (the rotation
// check looks for gaps in the numbers) and every tenth number on stderr.
const loggerScript = `i=0; while true; do i=$((i+1)); echo "line $(printf %06d $i) xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; ` +
	`if [ $((i % 10)) -eq 0 ]; then echo "err $i" >&2; fi; sleep 0.05; done`

// guaranteedScript writes the container's own CPU and memory limits, read
// from its cgroup, into the hostPath volume.
const guaranteedScript = `if [ -f /sys/fs/cgroup/cgroup.controllers ]; then ` +
	`echo "v2 $(cat /sys/fs/cgroup/memory.max) $(cat /sys/fs/cgroup/cpu.max)"; else ` +
	`echo "v1 $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; fi ` +
	`> /host/guaranteed.tmp && mv /host/guaranteed.tmp /host/guaranteed; exec sleep 3600`

// volumesScript writes through the emptyDir into the hostPath, then waits
// for the test to write into the hostPath and echoes that back the same
// way.
const volumesScript = `echo written-in-pod > /scratch/f && cp /scratch/f /host/from-pod.tmp && mv /host/from-pod.tmp /host/from-pod; ` +
	`while [ ! -f /host/to-pod ]; do sleep 0.2; done; cat /host/to-pod > /scratch/echo; ` +
	`cp /scratch/echo /host/echo.tmp && mv /host/echo.tmp /host/echo; exec sleep 3600`

// podSet is the set of manifests of one run.
type podSet struct {
	HostDir  string // the hostPath volume's directory
	HostPort int    // the hostport pod's port on 127.0.0.1
}

func (ps podSet) pods() []*corev1.Pod {
	state := corev1.Volume{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	stateMount := []corev1.VolumeMount{{Name: "state", MountPath: "/state"}}
	dirType := corev1.HostPathDirectory
	host := corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: ps.HostDir, Type: &dirType}}}
	hostMount := corev1.VolumeMount{Name: "host", MountPath: "/host"}
	limits := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("250m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	}

	work := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	initPod := pod(podInit, corev1.RestartPolicyAlways,
		[]corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		with(shell("main", `test -f /work/token || exit 1; cat /work/token; exec sleep 3600`), func(c *corev1.Container) {
			c.VolumeMounts = work
		}))
	initPod.Spec.InitContainers = []corev1.Container{with(shell("prepare", `echo prepared > /work/token`), func(c *corev1.Container) {
		c.VolumeMounts = work
	})}

	return []*corev1.Pod{
		pod(podLogger, corev1.RestartPolicyAlways, nil, shell("log", loggerScript)),
		pod(podGuaranteed, corev1.RestartPolicyAlways, []corev1.Volume{host},
			with(shell("limited", guaranteedScript), func(c *corev1.Container) {
				c.Resources = corev1.ResourceRequirements{Limits: limits, Requests: limits}
				c.VolumeMounts = []corev1.VolumeMount{hostMount}
			})),
		pod(podRestart, corev1.RestartPolicyAlways, []corev1.Volume{state},
			with(shell("flaky", attemptCounter+`if [ $n -eq 1 ]; then sleep 1; exit 3; fi; exec sleep 3600`), func(c *corev1.Container) {
				c.VolumeMounts = stateMount
			})),
		pod(podLiveness, corev1.RestartPolicyAlways, []corev1.Volume{state},
			with(shell("probed", attemptCounter+`if [ $n -ge 2 ]; then touch /tmp/healthy; fi; exec sleep 3600`), func(c *corev1.Container) {
				c.VolumeMounts = stateMount
				c.LivenessProbe = &corev1.Probe{
					ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
					InitialDelaySeconds: 1,
					PeriodSeconds:       2,
					TimeoutSeconds:      5,
					FailureThreshold:    1,
				}
			})),
		pod(podOnFailure, corev1.RestartPolicyOnFailure, []corev1.Volume{state},
			with(shell("job", attemptCounter+`[ $n -ge 2 ]`), func(c *corev1.Container) {
				c.VolumeMounts = stateMount
			})),
		initPod,
		pod(podHostPort, corev1.RestartPolicyAlways, nil,
			with(shell("web", `exec httpd -f -p 8080 -h /var/www`), func(c *corev1.Container) {
				c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(ps.HostPort), HostIP: "127.0.0.1", Protocol: corev1.ProtocolTCP}}
			})),
		pod(podVolumes, corev1.RestartPolicyAlways,
			[]corev1.Volume{host, {Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			with(shell("shell", volumesScript), func(c *corev1.Container) {
				c.VolumeMounts = []corev1.VolumeMount{hostMount, {Name: "scratch", MountPath: "/scratch"}}
			})),
		pod(podAttach, corev1.RestartPolicyAlways, nil,
			with(shell("repl", `while read l; do echo "got:$l"; done`), func(c *corev1.Container) {
				c.Stdin = true
			})),
		pod(podVictim, corev1.RestartPolicyAlways, nil, shell("sleeper", `exec sleep 3600`)),
	}
}

// pod is a static pod of the suite.
func pod(name string, restart corev1.RestartPolicy, volumes []corev1.Volume, c corev1.Container) *corev1.Pod {
	grace := int64(2)
	no := false
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{c},
			RestartPolicy:                 restart,
			Volumes:                       volumes,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
		},
	}
}

// shell is a container running script with sh -c.
func shell(name, script string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           image,
		ImagePullPolicy: corev1.PullNever,
		Command:         []string{"sh", "-c", script},
	}
}

func with[T any](v T, f func(*T)) T {
	f(&v)
	return v
}

// writeManifest writes p into dir as <name>.yaml, atomically (kubelet
// watches the directory and must never read half a file).
func writeManifest(dir string, p *corev1.Pod) error {
	data, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+p.Name+".yaml.tmp") // kubelet skips dot files
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, p.Name+".yaml"))
}
