package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// load parses args the way `berth serve` does: flags first, then the file
// for every flag the command line left alone.
func load(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	c := Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.BindFlags(fs)
	var path string
	BindConfigFlag(fs, &path)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := ApplyFile(fs); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileTOML(t *testing.T) {
	p := writeFile(t, "config.toml", `
docker-endpoint = "unix:///run/other/docker.sock"
cni-bin-dir = ["/opt/cni/bin", "/usr/local/cni"]
network-plugin-mtu = 1400
runtime-request-timeout = "3m"
ipv6-dual-stack = true
pinned-images = "a:1,b:2"
log-level = "debug"
`)
	c, err := load(t, "--config", p, "--log-level=warn")
	if err != nil {
		t.Fatal(err)
	}
	if c.DockerEndpoint != "unix:///run/other/docker.sock" ||
		!reflect.DeepEqual(c.CNIBinDirs, []string{"/opt/cni/bin", "/usr/local/cni"}) ||
		c.NetworkPluginMTU != 1400 || c.RuntimeRequestTimeout != 3*time.Minute || !c.IPv6DualStack ||
		!reflect.DeepEqual(c.PinnedImages, []string{"a:1", "b:2"}) {
		t.Errorf("file not applied: %+v", c)
	}
	if c.LogLevel != "warn" {
		t.Errorf("log-level = %q: the command line must override the file", c.LogLevel)
	}
}

func TestConfigFileYAML(t *testing.T) {
	p := writeFile(t, "config.yaml", "cni-conf-dir: /etc/cni/other\nnetwork-plugin-mtu: 1450\ncni-bin-dir: [/a, /b]\n")
	c, err := load(t, "--config", p)
	if err != nil {
		t.Fatal(err)
	}
	if c.CNIConfDir != "/etc/cni/other" || c.NetworkPluginMTU != 1450 || !reflect.DeepEqual(c.CNIBinDirs, []string{"/a", "/b"}) {
		t.Errorf("file not applied: %+v", c)
	}
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"unknown key", `dockershim-root = "/x"`, `unknown key "dockershim-root"`},
		{"config key", `config = "/x"`, `unknown key "config"`},
		{"bad value", `network-plugin-mtu = "lots"`, "network-plugin-mtu"},
		{"bad duration", `runtime-request-timeout = 5`, "runtime-request-timeout"},
		{"bad toml", `log-level = `, "config.toml"},
		{"fraction", `network-plugin-mtu = 1.5`, "network-plugin-mtu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, "--config", writeFile(t, "config.toml", tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	if _, err := load(t, "--config", missing); err == nil {
		t.Error("an explicitly named missing file was accepted")
	}
	// The default file is optional. It is absent on a test machine unless
	// Berth is installed; either way the defaults must load.
	if _, err := os.Stat(DefaultFile); err == nil {
		t.Logf("%s exists on this machine; only checking that it loads", DefaultFile)
	}
	if _, err := load(t); err != nil {
		t.Errorf("loading without --config: %v", err)
	}
}

// TestDefaultFileRoundTrips checks that `berth config default`, with every
// line uncommented, is a valid file that sets exactly the defaults, and that
// it mentions every flag.
func TestDefaultFileRoundTrips(t *testing.T) {
	c := Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.BindFlags(fs)
	var path string
	BindConfigFlag(fs, &path)
	var out bytes.Buffer
	if err := WriteDefaultFile(&out, fs); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != ConfigFlag && !strings.Contains(out.String(), "# "+f.Name+" = ") {
			t.Errorf("default file lacks %s", f.Name)
		}
	})
	uncommented := regexp.MustCompile(`(?m)^# ([a-z0-9-]+ = )`).ReplaceAllString(out.String(), "$1")
	p := writeFile(t, "config.toml", uncommented)
	got, err := load(t, "--config", p)
	if err != nil {
		t.Fatalf("uncommented default file: %v\n%s", err, uncommented)
	}
	if len(got.PinnedImages) == 0 {
		got.PinnedImages = nil // an empty list and no list mean the same
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("uncommented default file gives\n%+v\nwant\n%+v", got, want)
	}
}
