package kubeletcfg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFlagValue(t *testing.T) {
	args := SplitArgs(`--a=1 --container-runtime-endpoint unix:///x.sock -v 2 --flag --b='q r' --a=3`)
	for _, tc := range []struct {
		name, want string
		found      bool
	}{
		{"a", "3", true},
		{"container-runtime-endpoint", "unix:///x.sock", true},
		{"v", "2", true},
		{"flag", "", true},
		{"b", "q r", true},
		{"missing", "", false},
	} {
		got, found := FlagValue(args, tc.name)
		if got != tc.want || found != tc.found {
			t.Errorf("FlagValue(%s) = %q, %v; want %q, %v", tc.name, got, found, tc.want, tc.found)
		}
	}
}

func TestDiscoverPrecedence(t *testing.T) {
	dir := t.TempDir()
	p := Paths{
		ConfigFile:       filepath.Join(dir, "config.yaml"),
		KubeadmFlagsFile: filepath.Join(dir, "kubeadm-flags.env"),
		DefaultsFile:     filepath.Join(dir, "kubelet"),
		ProcRoot:         filepath.Join(dir, "proc"),
	}
	os.MkdirAll(p.ProcRoot, 0o755)
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Discover(p)
	if err != nil || s.Found() {
		t.Fatalf("empty node: %+v, %v", s, err)
	}
	write(p.ConfigFile, "kind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///a.sock\n")
	write(p.KubeadmFlagsFile, `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///b.sock --network-plugin=cni"`+"\n")
	s, err = Discover(p)
	if err != nil {
		t.Fatal(err)
	}
	if ep, src := s.Endpoint(); ep != "unix:///b.sock" || src.Kind != KindKubeadmFlags {
		t.Errorf("endpoint = %q from %+v", ep, src)
	}
	if d, src := s.CgroupDriver(); d != "systemd" || src.Kind != KindConfig {
		t.Errorf("cgroup driver = %q from %+v", d, src)
	}
	if got := s.Source(KindKubeadmFlags).DockershimFlags; !reflect.DeepEqual(got, []string{"network-plugin"}) {
		t.Errorf("dockershim flags = %v", got)
	}
	write(p.DefaultsFile, "# comment\nKUBELET_EXTRA_ARGS=--container-runtime-endpoint=/c.sock --hostname-override=node-1\n")
	s, _ = Discover(p)
	if ep, src := s.Endpoint(); ep != "/c.sock" || src.Kind != KindDefaults {
		t.Errorf("endpoint = %q from %+v", ep, src)
	}
	if h := s.HostnameOverride(); h != "node-1" {
		t.Errorf("hostname override = %q", h)
	}
	write(p.ConfigFile, "kind: Pod\n")
	if _, err := Discover(p); err == nil || !strings.Contains(err.Error(), "not KubeletConfiguration") {
		t.Errorf("a non-KubeletConfiguration file: %v", err)
	}
}

func TestFindProcess(t *testing.T) {
	proc := t.TempDir()
	mk := func(pid, comm, cmdline string) {
		os.MkdirAll(filepath.Join(proc, pid), 0o755)
		os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(cmdline), 0o644)
	}
	mk("12", "bash", "bash\x00")
	mk("34", "kubelet", "/usr/bin/kubelet\x00--config=/var/lib/kubelet/config.yaml\x00--container-runtime-endpoint\x00unix:///run/berth/berth.sock\x00")
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	p, err := FindProcess(proc, "kubelet")
	if err != nil || p == nil || p.PID != 34 {
		t.Fatalf("FindProcess = %+v, %v", p, err)
	}
	if got := p.Flag("container-runtime-endpoint"); got != "unix:///run/berth/berth.sock" {
		t.Errorf("endpoint flag = %q", got)
	}
	if got := p.Flag("config"); got != "/var/lib/kubelet/config.yaml" {
		t.Errorf("config flag = %q", got)
	}
}

func TestRewriteEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		edit           EnvEdit
	}{
		{
			name: "replace, keep the rest",
			in:   "# kubeadm\nKUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.9 --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock\"\n",
			edit: EnvEdit{Endpoint: "unix:///run/berth/berth.sock"},
			want: "# kubeadm\nKUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.9 --container-runtime-endpoint=unix:///run/berth/berth.sock\"\n",
		},
		{
			name: "separate value, dockershim flags dropped",
			in:   "KUBELET_KUBEADM_ARGS=\"--container-runtime docker --network-plugin=cni --cni-bin-dir /opt/cni/bin --container-runtime-endpoint unix:///var/run/dockershim.sock --v=2\"\n",
			edit: EnvEdit{Endpoint: "unix:///run/berth/berth.sock", DropDockershim: true},
			want: "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/berth/berth.sock --v=2\"\n",
		},
		{
			name: "added to an existing variable",
			in:   "KUBELET_KUBEADM_ARGS=\"--v=2\"\n",
			edit: EnvEdit{Endpoint: "unix:///run/berth/berth.sock", AddTo: "KUBELET_KUBEADM_ARGS"},
			want: "KUBELET_KUBEADM_ARGS=\"--v=2 --container-runtime-endpoint=unix:///run/berth/berth.sock\"\n",
		},
		{
			name: "added as a new variable",
			in:   "",
			edit: EnvEdit{Endpoint: "unix:///run/berth/berth.sock", AddTo: "KUBELET_EXTRA_ARGS"},
			want: "KUBELET_EXTRA_ARGS=\"--container-runtime-endpoint=unix:///run/berth/berth.sock\"\n",
		},
		{
			name: "nothing to do",
			in:   "KUBELET_EXTRA_ARGS=--v=2\n",
			edit: EnvEdit{Endpoint: "unix:///run/berth/berth.sock"},
			want: "KUBELET_EXTRA_ARGS=--v=2\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := RewriteEnvFile([]byte(tc.in), tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if changed != (tc.in != tc.want) {
				t.Errorf("changed = %v", changed)
			}
		})
	}
}

func TestRewriteConfig(t *testing.T) {
	in := "apiVersion: kubelet.config.k8s.io/v1beta1\n# the runtime\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\ncgroupDriver: systemd\n"
	got, changed, err := RewriteConfig([]byte(in), "unix:///run/berth/berth.sock")
	want := "apiVersion: kubelet.config.k8s.io/v1beta1\n# the runtime\ncontainerRuntimeEndpoint: unix:///run/berth/berth.sock\ncgroupDriver: systemd\n"
	if err != nil || !changed || string(got) != want {
		t.Errorf("got %q, %v, %v", got, changed, err)
	}
	got, changed, err = RewriteConfig([]byte("kind: KubeletConfiguration"), "unix:///run/berth/berth.sock")
	if err != nil || !changed || string(got) != "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/berth/berth.sock\n" {
		t.Errorf("appending: got %q, %v, %v", got, changed, err)
	}
	if _, changed, _ := RewriteConfig([]byte(want), "unix:///run/berth/berth.sock"); changed {
		t.Error("rewriting to the same endpoint changed the file")
	}
}

func TestSameEndpoint(t *testing.T) {
	if !SameEndpoint("/run/berth/berth.sock", "unix:///run/berth//berth.sock") {
		t.Error("bare path and unix:// differ")
	}
	if SameEndpoint("unix:///run/a.sock", "unix:///run/b.sock") {
		t.Error("different sockets are the same")
	}
}
