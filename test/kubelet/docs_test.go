package kubelet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/test/framework"
)

// docOptions fill the suite's KubeletConfiguration with a real node's
// paths, as docs/kubelet.md shows it.
var docOptions = kubeletOptions{
	RuntimeEndpoint: "unix:///run/berth/berth.sock",
	Port:            10250,
	CgroupRoot:      "/",
	StaticPodPath:   "/etc/kubernetes/manifests",
	PodLogsDir:      "/var/log/pods",
	VolumePluginDir: "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/",
}

// TestDocShowsSuiteConfig keeps docs/kubelet.md showing exactly the
// configuration the suite runs kubelet with.
func TestDocShowsSuiteConfig(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "docs", "kubelet.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := "```yaml\n" + kubeletConfig(docOptions) + "```\n"
	if !strings.Contains(string(doc), want) {
		t.Errorf("docs/kubelet.md does not show the suite's KubeletConfiguration; it should contain:\n%s", want)
	}
	// The feature gates of every mode but the default, as the block added
	// to that configuration.
	for _, m := range modes {
		if len(m.gates) == 0 {
			continue
		}
		want := "```yaml\n" + featureGatesYAML(m.gates) + "```\n"
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/kubelet.md does not show the feature gates of the %s run; it should contain:\n%s", m.name, want)
		}
	}
}
