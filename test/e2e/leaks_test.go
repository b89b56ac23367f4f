package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berth-cri/berth/test/framework"
)

// leakCheck reports what the suite left behind: containers the shared
// Berth created, its checkpoints, and helper containers of this run (which
// it then removes, so one failure does not spill into the next run).
func leakCheck(rootDir string) []string {
	var leaks []string
	dockerPS := func(filter string) []string {
		cmd := exec.Command("docker", "ps", "-a", "-q", "--filter", filter)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+framework.DockerHost())
		out, _ := cmd.Output()
		return strings.Fields(string(out))
	}
	if ids := dockerPS("label=io.berth.root=" + rootDir); len(ids) > 0 {
		leaks = append(leaks, fmt.Sprintf("containers of the shared berth: %v", ids))
	}
	if entries, _ := os.ReadDir(filepath.Join(rootDir, "sandboxes")); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		leaks = append(leaks, fmt.Sprintf("checkpoints: %v", names))
	}
	if ids := dockerPS("label=berth-e2e-run=" + runID); len(ids) > 0 {
		leaks = append(leaks, fmt.Sprintf("containers of this run: %v", ids))
		cmd := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+framework.DockerHost())
		_ = cmd.Run()
	}
	return leaks
}
