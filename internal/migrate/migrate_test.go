package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-cri/berth/internal/kubeletcfg"
)

const berth = "unix:///run/berth/berth.sock"

func TestPlanEdits(t *testing.T) {
	dir := t.TempDir()
	paths := kubeletcfg.Paths{
		ConfigFile:       filepath.Join(dir, "config.yaml"),
		KubeadmFlagsFile: filepath.Join(dir, "kubeadm-flags.env"),
		DefaultsFile:     filepath.Join(dir, "kubelet"),
		ProcRoot:         dir,
	}
	discover := func() kubeletcfg.Settings {
		s, err := kubeletcfg.Discover(paths)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := planEdits(discover(), berth, nil); err == nil {
		t.Error("no kubelet files: want an error naming the flags")
	}

	// Nothing sets the endpoint: it goes into the KubeletConfiguration.
	os.WriteFile(paths.ConfigFile, []byte("kind: KubeletConfiguration\n"), 0o644)
	os.WriteFile(paths.KubeadmFlagsFile, []byte(`KUBELET_KUBEADM_ARGS="--v=2"`+"\n"), 0o644)
	edits, err := planEdits(discover(), berth, nil)
	if err != nil || len(edits) != 1 || edits[0].src.Kind != kubeletcfg.KindConfig {
		t.Fatalf("edits = %+v, %v", edits, err)
	}
	st := &State{}
	saves := 0
	if err := edits[0].apply(st, func() error { saves++; return nil }); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(paths.ConfigFile)
	backup, _ := os.ReadFile(paths.ConfigFile + BackupSuffix)
	if !strings.Contains(string(data), "containerRuntimeEndpoint: "+berth) || string(backup) != "kind: KubeletConfiguration\n" || saves != 1 {
		t.Errorf("after apply: %q, backup %q, %d saves", data, backup, saves)
	}
	// Applying again (a resumed run) keeps the first backup.
	if err := edits[0].apply(st, func() error { saves++; return nil }); err != nil {
		t.Fatal(err)
	}
	backup, _ = os.ReadFile(paths.ConfigFile + BackupSuffix)
	if string(backup) != "kind: KubeletConfiguration\n" || len(st.Files) != 1 {
		t.Errorf("second apply replaced the backup: %q, %+v", backup, st.Files)
	}
	// Now every file that names the runtime already names Berth.
	if edits, err := planEdits(discover(), berth, st); err != nil || len(edits) != 0 {
		t.Errorf("after the rewrite: %+v, %v", edits, err)
	}

	// Dockershim flags are removed even where the endpoint is right.
	os.WriteFile(paths.DefaultsFile, []byte("KUBELET_EXTRA_ARGS=--network-plugin=cni\n"), 0o644)
	edits, err = planEdits(discover(), berth, st)
	if err != nil || len(edits) != 1 || edits[0].src.Kind != kubeletcfg.KindDefaults || !strings.Contains(edits[0].describe(), "--network-plugin") {
		t.Errorf("edits = %+v, %v", edits, err)
	}
}

// TestPlanEditsDockershim: a dockershim kubelet names no endpoint, only
// --container-runtime=docker; with no KubeletConfiguration the endpoint goes
// into kubeadm-flags.env, in the same edit that drops dockershim's flags.
func TestPlanEditsDockershim(t *testing.T) {
	dir := t.TempDir()
	paths := kubeletcfg.Paths{
		ConfigFile:       filepath.Join(dir, "none.yaml"),
		KubeadmFlagsFile: filepath.Join(dir, "kubeadm-flags.env"),
		DefaultsFile:     filepath.Join(dir, "kubelet"),
		ProcRoot:         dir,
	}
	os.WriteFile(paths.KubeadmFlagsFile, []byte(`KUBELET_KUBEADM_ARGS="--container-runtime=docker --network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.6"`+"\n"), 0o644)
	s, err := kubeletcfg.Discover(paths)
	if err != nil {
		t.Fatal(err)
	}
	edits, err := planEdits(s, berth, nil)
	if err != nil || len(edits) != 1 {
		t.Fatalf("edits = %+v, %v", edits, err)
	}
	if err := edits[0].apply(&State{}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(paths.KubeadmFlagsFile)
	want := `KUBELET_KUBEADM_ARGS="--pod-infra-container-image=k8s.gcr.io/pause:3.6 --container-runtime-endpoint=` + berth + `"` + "\n"
	if string(got) != want {
		t.Errorf("kubeadm-flags.env:\n%s\nwant\n%s", got, want)
	}
}

func TestNodeReadySince(t *testing.T) {
	restart := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	node := func(status corev1.ConditionStatus, heartbeat time.Time, runtime string) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.NewTime(heartbeat)}},
			NodeInfo:   corev1.NodeSystemInfo{ContainerRuntimeVersion: runtime},
		}}
	}
	for _, tc := range []struct {
		name string
		n    *corev1.Node
		want bool
	}{
		{"ready after restart", node(corev1.ConditionTrue, restart.Add(time.Second), "docker://20.10"), true},
		{"heartbeat same second", node(corev1.ConditionTrue, restart, "docker://20.10"), true},
		{"stale heartbeat", node(corev1.ConditionTrue, restart.Add(-time.Minute), "docker://20.10"), false},
		{"not ready", node(corev1.ConditionFalse, restart.Add(time.Second), "docker://20.10"), false},
		{"other runtime", node(corev1.ConditionTrue, restart.Add(time.Second), "containerd://1.7"), false},
		{"no conditions", &corev1.Node{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := nodeReadySince(tc.n, restart, "docker://20.10"); got != tc.want {
				t.Errorf("nodeReadySince = %v (%s), want %v", got, why, tc.want)
			}
		})
	}
}
