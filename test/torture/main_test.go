// Package torture is Berth's reliability suite: Berth killed mid-call,
// Docker restarted, faults injected into Docker, CNI and the disk, many
// clients at once, bad input and access checks, each against a real Docker
// Engine, each followed by a search for leaks. Every scenario runs at two
// sizes: CI scale (part of `make test`) and full scale (`make torture`,
// TORTURE_SCALE=full). The suite ends with a table of faults injected,
// operations done, errors expected and unexpected, and leaks found.
package torture

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/berth-cri/berth/test/framework"
)

func TestMain(m *testing.M) {
	if isCNIPlugin() {
		os.Exit(cniPluginMain())
	}
	code := run(m)
	if err := framework.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "torture: removing the framework's temporary files:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	sc, err := scaleFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture: FAIL:", err)
		return 1
	}
	scale = sc
	v, err := framework.RequireDocker(context.Background())
	if err != nil {
		// A missing prerequisite is a failure, never a skip.
		fmt.Fprintln(os.Stderr, "torture: FAIL:", err)
		return 1
	}
	if err := framework.CheckDockerdBinary(v.Version); err != nil {
		fmt.Fprintln(os.Stderr, "torture: FAIL:", err)
		return 1
	}
	race := os.Getenv("BERTH_TEST_RACE") == "1"
	fmt.Printf("torture: scale %s, Docker %s at %s, berth built with the race detector: %v\n",
		scale.Name, v.Version, framework.DockerHost(), race)
	if _, err := framework.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "torture: FAIL: building berth:", err)
		return 1
	}
	start := time.Now()
	code := m.Run()
	printTable(os.Stdout)
	fmt.Printf("torture: the suite took %v\n", time.Since(start).Round(time.Second))
	if code == 0 && !allClean() {
		code = 1
	}
	return code
}
