package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/test/framework"
)

// TestServeReadsConfigFile: berth serve applies its configuration file, and
// flags on the command line override it.
func TestServeReadsConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	// log-level is also given on the command line (the framework passes
	// --log-level=debug): the flag must win.
	if err := os.WriteFile(path, []byte("socket-group = \"docker\"\nlog-format = \"json\"\nlog-level = \"error\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := framework.StartBerth(t, framework.Options{Args: []string{"--config", path}})
	st, err := os.Stat(b.Socket)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := config.LookupGroup("docker")
	if err != nil {
		t.Fatalf("group docker (made by the docker.io package): %v", err)
	}
	if got := st.Sys().(*syscall.Stat_t).Gid; int(got) != gid {
		t.Errorf("socket group %d, want docker (%d) from the config file", got, gid)
	}
	log := b.Log()
	if !strings.HasPrefix(strings.TrimSpace(log), "{") {
		t.Errorf("log is not JSON (log-format from the file):\n%.500s", log)
	}
	if !strings.Contains(log, `"level":"DEBUG"`) {
		t.Errorf("no debug lines: --log-level=debug on the command line must override the file's error:\n%.1000s", log)
	}

	// An unknown key stops berth serve with an error naming file and key.
	if err := os.WriteFile(path, []byte("no-such-setting = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := framework.Binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown key "no-such-setting"`) || !strings.Contains(string(out), path) {
		t.Errorf("berth serve with an unknown key: %v\n%s", err, out)
	}
}
