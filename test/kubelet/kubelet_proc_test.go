package kubelet

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	kubeletconfig "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// kubeletOptions are what a run varies in kubelet's configuration.
type kubeletOptions struct {
	NodeName        string
	RuntimeEndpoint string // Berth's socket, unix://...
	Port            int    // the authenticated HTTPS port, on 127.0.0.1
	CgroupRoot      string
	StaticPodPath   string
	// Kubeconfig, when set, connects kubelet to an API server (its pods
	// come from there as well as from StaticPodPath); else standalone.
	Kubeconfig      string
	PodLogsDir      string
	VolumePluginDir string
	FeatureGates    map[string]bool
}

// kubeletConfig is the KubeletConfiguration the suite runs kubelet with;
// docs/kubelet.md explains it field by field. Everything a default kubelet
// would put on the host is moved into the run's directories, or switched
// off where it cannot be moved.
func kubeletConfig(o kubeletOptions) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The runtime: Berth's CRI socket, for containers and images.
containerRuntimeEndpoint: %[1]s
imageServiceEndpoint: %[1]s
# kubelet 1.31 and newer take the driver from Berth by default (RuntimeConfig
# reports Docker's); older ones need it to match "docker info".
cgroupDriver: cgroupfs
# The parent of kubelet's kubepods cgroup ("/" unless set).
cgroupRoot: %[2]s
# Static pods (the only pods in standalone mode, without --kubeconfig).
staticPodPath: %[3]s
fileCheckFrequency: 5s
# Listen on loopback only; anonymous, unauthorised access is for this
# throw-away kubelet only (a real node uses webhook authn/authz).
address: 127.0.0.1
port: %[4]d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
# What these test machines need: cgroup v1, swap on, no CAP_SYS_RESOURCE
# (kubelet cannot lower its own OOM score).
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
# FlexVolume drivers: kubelet creates this directory when it is missing
# (default /usr/libexec/kubernetes/kubelet-plugins/volume/exec/).
volumePluginDir: %[7]s
# Leave the host's iptables alone: no KUBE-* chains (the CNI portmap plugin
# Berth runs does the hostPort rules).
makeIPTablesUtilChains: false
# Container logs, rotated by kubelet: small files so rotation happens in
# seconds.
podLogsDir: %[5]s
containerLogMaxSize: 1Ki
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s
# Never garbage-collect images, never evict on these shared disks.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
  imagefs.inodesFree: 1%%
%[6]s`, o.RuntimeEndpoint, o.CgroupRoot, o.StaticPodPath, o.Port, o.PodLogsDir, featureGatesYAML(o.FeatureGates), o.VolumePluginDir)
}

// featureGatesYAML is the featureGates block of a KubeletConfiguration,
// empty for no gates.
func featureGatesYAML(gates map[string]bool) string {
	if len(gates) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("featureGates:\n")
	for _, name := range slices.Sorted(maps.Keys(gates)) {
		fmt.Fprintf(&b, "  %s: %t\n", name, gates[name])
	}
	return b.String()
}

// kubeletProcess is a kubelet started by the test.
type kubeletProcess struct {
	Args    []string
	RootDir string
	CertDir string
	LogPath string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{}
}

// startKubelet writes the configuration into dir and starts kubelet; it is
// stopped when t ends (StopKubelet stops it earlier).
func startKubelet(t testing.TB, bin, dir string, o kubeletOptions) *kubeletProcess {
	t.Helper()
	var extra []string
	if o.Kubeconfig != "" {
		extra = []string{"--kubeconfig", o.Kubeconfig}
	}
	return startKubeletWith(t, bin, dir, o.NodeName, kubeletConfig(o), extra...)
}

// startKubeletWith starts kubelet with the KubeletConfiguration data, for a
// node named nodeName, with extra flags.
func startKubeletWith(t testing.TB, bin, dir, nodeName, data string, extra ...string) *kubeletProcess {
	t.Helper()
	config := filepath.Join(dir, "kubelet-config.yaml")
	// kubelet only warns about unknown fields, and then ignores them.
	if err := yaml.UnmarshalStrict([]byte(data), &kubeletconfig.KubeletConfiguration{}); err != nil {
		t.Fatalf("the suite's KubeletConfiguration: %v", err)
	}
	if err := os.WriteFile(config, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &kubeletProcess{
		RootDir: filepath.Join(dir, "kubelet"),
		CertDir: filepath.Join(dir, "kubelet-pki"),
		LogPath: filepath.Join(dir, "kubelet.log"),
		exited:  make(chan struct{}),
	}
	// No --kubeconfig among extra: standalone mode.
	k.Args = append([]string{
		"--config", config,
		"--root-dir", k.RootDir,
		"--cert-dir", k.CertDir,
		"--hostname-override", nodeName,
		"--v", "4",
	}, extra...)
	f, err := os.Create(k.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	k.logFile = f
	k.cmd = exec.Command(bin, k.Args...)
	k.cmd.Stdout = f
	k.cmd.Stderr = f
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("starting kubelet: %v", err)
	}
	go func() {
		_ = k.cmd.Wait()
		close(k.exited)
	}()
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("kubelet log (last 150 lines of %s):\n%s", k.LogPath, k.tail(150))
		}
	})
	return k
}

// Exited reports whether kubelet has exited.
func (k *kubeletProcess) Exited() bool {
	select {
	case <-k.exited:
		return true
	default:
		return false
	}
}

// Stop stops kubelet (SIGTERM, then SIGKILL after 30s); it is idempotent.
// Kubelet does not stop the pods when it exits.
func (k *kubeletProcess) Stop() {
	if k.Exited() {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
	_ = k.logFile.Close()
}

// Log returns kubelet's log so far.
func (k *kubeletProcess) Log() string {
	b, _ := os.ReadFile(k.LogPath)
	return string(b)
}

func (k *kubeletProcess) tail(n int) string {
	lines := strings.Split(k.Log(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
