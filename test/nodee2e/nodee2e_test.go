// Package nodee2e runs Kubernetes' node conformance suite (test/e2e_node,
// focus [NodeConformance]) against Berth: make test-node-e2e,
// docs/conformance.md.
//
// The suite's local mode starts an embedded etcd and an in-process
// kube-apiserver itself, then kubelet pointed at Berth. This test provides
// what it needs and nothing pulled from the internet: a private Docker
// daemon (a kubelet kills the pods it did not create, so never the system
// daemon), with a runtime named test-handler for the RuntimeClass specs; a
// local registry holding the suite's images (hack/build-node-e2e-images.sh)
// under the names KUBE_TEST_REPO_LIST maps registry.k8s.io to; a CNI
// network; Berth on its own socket and root dir; the suite's binaries and
// kubelet from the module proxy (hack/build-node-e2e.sh,
// hack/build-kubelet.sh).
package nodee2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/pause"
	"github.com/berth-cri/berth/test/framework"
)

// Defaults, overridden by the environment (the Makefile passes them).
const (
	// What CRI-O's and containerd's node conformance jobs run.
	defaultFocus = `\[NodeConformance\]`
	defaultSkip  = `\[Flaky\]|\[Slow\]|\[Serial\]|\[Alpha\]`
	// Parallel ginkgo processes: the specs mostly wait (on kubelet's sync
	// loop, on containers that sleep), and one kubelet serves them all.
	defaultNodes = 4
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := framework.Cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "node-e2e: cleaning up: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func TestNodeConformance(t *testing.T) {
	focus := env("NODE_E2E_FOCUS", defaultFocus)
	skip := env("NODE_E2E_SKIP", defaultSkip)
	nodes, err := strconv.Atoi(env("NODE_E2E_NODES", strconv.Itoa(defaultNodes)))
	if err != nil || nodes < 1 {
		t.Fatalf("NODE_E2E_NODES=%q: want a positive number", os.Getenv("NODE_E2E_NODES"))
	}
	timeout := env("NODE_E2E_TIMEOUT", "6h")

	framework.LockKubeletHost(t, "node-e2e")
	suite := framework.BuiltTool(t, "BERTH_TEST_NODE_E2E", "build-node-e2e.sh")
	kubelet := framework.BuiltTool(t, "BERTH_TEST_KUBELET", "build-kubelet.sh")
	for _, p := range []string{filepath.Join(suite, "e2e_node.test"), filepath.Join(suite, "ginkgo"), kubelet} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}

	// Short: kubelet's and the suite's socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	guardHost(t)

	// Out of /tmp: the HostPath specs mount the host's /tmp into pods.
	d := framework.StartDockerdUnder(t, "/var/lib", "", "--add-runtime", "test-handler=/usr/sbin/runc")
	dockerdPid, err := os.ReadFile(filepath.Join(d.Dir, "d.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(dockerdPid)))
	if err := moveToCgroup(runtimeCgroup(), pid); err != nil {
		t.Fatal(err)
	}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	buildImages(t, d.Host, reg.Addr, suite, dir)
	checkImages(t, d.Host, reg.Addr)
	if t.Failed() {
		t.FailNow()
	}

	net := framework.NewCNINetwork(t, framework.CNIOptions{})
	b := framework.StartBerth(t, framework.Options{
		// Info, not the framework's debug: kubelet polls several times a
		// second, and the log is printed when the run fails.
		Args: append([]string{"--docker-endpoint", d.Host, "--log-level", "info"}, net.Args()...),
	})
	t.Cleanup(func() { sweepPods(t, b) })
	if err := moveToCgroup(runtimeCgroup(), b.Pid()); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "berth.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(b.Pid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	reportDir := env("NODE_E2E_REPORT_DIR", filepath.Join(os.TempDir(), "berth-node-e2e-"+time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("node-e2e: reports in %s\n", reportDir)
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	repoList := filepath.Join(dir, "repo-list.yaml")
	writeFile(t, repoList, repoListYAML(reg.Addr))
	kubeletConfig := filepath.Join(dir, "kubelet-config.yaml")
	writeFile(t, kubeletConfig, kubeletConfigYAML)
	path := hideSystemdRun(t, dir)
	// The suite looks for kubelet next to itself (its --k8s-bin-dir is a
	// flag of the suite's runner, not of e2e_node.test).
	bin := filepath.Join(dir, "suite")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(suite, "e2e_node.test"), filepath.Join(bin, "e2e_node.test")); err != nil {
		t.Fatal(err)
	}
	if err := writeKubeletLauncher(filepath.Join(bin, "kubelet"), kubelet); err != nil {
		t.Fatal(err)
	}

	args := []string{
		"--no-color", "--timeout=" + timeout,
		"--focus=" + focus, "--skip=" + skip,
		"--json-report=report.json", "--junit-report=junit.xml", "--output-dir=" + reportDir,
	}
	if nodes > 1 {
		args = append(args, "--nodes="+strconv.Itoa(nodes))
	}
	args = append(args, filepath.Join(bin, "e2e_node.test"), "--",
		"--container-runtime-endpoint="+b.Endpoint,
		"--image-service-endpoint="+b.Endpoint,
		"--container-runtime-process-name=berth",
		"--container-runtime-pid-file="+pidFile,
		"--kubelet-config-file="+kubeletConfig,
		// The images are in the local registry, under the names the
		// specs ask for: each spec pulls what it runs through Berth.
		"--prepull-images=false",
		"--report-dir="+reportDir,
		"--kubelet-flags="+strings.Join(kubeletFlags(), " "),
		// Berth's recommended configuration (docs/kubelet.md): pod and
		// container stats, and /metrics/cadvisor, from Berth's CRI stats.
		// The suite passes its gates on to kubelet and skips the specs
		// that do not apply with them.
		"--feature-gates="+featureGates,
	)
	cmd := exec.Command(filepath.Join(suite, "ginkgo"), args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "KUBE_TEST_REPO_LIST="+repoList, "PATH="+path)
	logPath := filepath.Join(reportDir, "ginkgo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a run interrupted by go test's timeout
	// still takes kubelet and every ginkgo process with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Printf("node-e2e: ginkgo %s (log: %s)\n", strings.Join(args, " "), logPath)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	runErr := cmd.Wait()
	elapsed := time.Since(start).Round(time.Second)

	// ginkgo prefixes the report's name with the suite's path when it
	// merges the parallel processes' reports.
	reports, _ := filepath.Glob(filepath.Join(reportDir, "*report.json"))
	if len(reports) == 0 {
		reports = []string{filepath.Join(reportDir, "report.json")}
	}
	specs, err := readReport(reports[0])
	if err != nil {
		t.Fatalf("reading the suite's report (ginkgo: %v): %v\n%s", runErr, err, tail(logPath, 60))
	}
	writeResults(t, filepath.Join(reportDir, "results.tsv"), specs)
	c := summarize(specs)
	fmt.Printf("node-e2e: %d passed, %d failed, %d skipped (%d specs not selected) in %s\n",
		c.passed, c.failed, c.skipped, c.notSelected, elapsed)
	if c.failed > 0 || runErr != nil && c.failed == 0 && c.passed == 0 {
		t.Errorf("the node conformance suite failed (ginkgo: %v); see %s", runErr, reportDir)
	}
}

// kubeletConfigYAML is the suite's own default (test/e2e_node/jenkins/
// default-kubelet-config.yaml) plus what this host needs: cgroup v1 and
// swap allowed, the cgroupfs driver (Docker's here).
const kubeletConfigYAML = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
podCIDR: "10.100.0.0/24"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
evictionMinimumReclaim:
  nodefs.available: 5%
  nodefs.inodesFree: 5%
serializeImagePulls: false
failCgroupV1: false
failSwapOn: false
`

// featureGates are the suite's and kubelet's feature gates.
const featureGates = "PodAndContainerStatsFromCRI=true"

// kubeletFlags override what the suite sets for a host without systemd:
// --kubelet-cgroups=/kubelet, --runtime-cgroups=/docker-daemon and
// systemCgroups /system, which makes kubelet move every process in the
// root cgroup there. On a machine other work shares that would move it
// too; so kubelet manages no system cgroup (the Summary API spec's "misc"
// container is absent: docs/conformance.md), and its own and the
// runtime's cgroups are this test's (the private dockerd and Berth are
// moved into the runtime's).
func kubeletFlags() []string {
	return []string{"--system-cgroups=", "--kubelet-cgroups=" + kubeletCgroup(), "--runtime-cgroups=" + runtimeCgroup()}
}

// repoListYAML maps the registries the suite's images live in to the local
// registry (KUBE_TEST_REPO_LIST). The private and the invalid registries
// stay as they are: their specs need gcr.io's credentials or a failing pull.
func repoListYAML(addr string) string {
	return fmt.Sprintf(`promoterE2eRegistry: %[1]s/e2e-test-images
buildImageRegistry: %[1]s/build-image
gcEtcdRegistry: %[1]s
gcRegistry: %[1]s
sigStorageRegistry: %[1]s/sig-storage
dockerLibraryRegistry: %[1]s/library
cloudProviderGcpRegistry: %[1]s/cloud-provider-gcp
`, addr)
}

// buildImages builds the suite's images into the private daemon and pushes
// them to the registry.
func buildImages(t *testing.T, host, registry, suite, dir string) {
	t.Helper()
	rootfs, err := pause.RootFS()
	if err != nil {
		t.Fatal(err)
	}
	pauseTar := filepath.Join(dir, "pause.tar")
	if err := os.WriteFile(pauseTar, rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(framework.RepoRoot(), "hack", "build-node-e2e-images.sh"), host, registry, suite, pauseTar)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the suite's images: %v\n%s", err, out)
	}
}

// hideSystemdRun returns a PATH without systemd-run: the suite starts
// kubelet through it whenever it is on PATH, which fails on a host
// without systemd as init. (A private mount namespace with /dev/null over
// the binary would hide it too, but kubelet's volume mounts would then
// stay in that namespace, out of the sight of dockerd, which bind-mounts
// them into containers.)
func hideSystemdRun(t *testing.T, dir string) string {
	t.Helper()
	shim := filepath.Join(dir, "bin")
	if err := os.MkdirAll(shim, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/usr/bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "systemd-run" {
			continue
		}
		if err := os.Symlink(filepath.Join("/usr/bin", e.Name()), filepath.Join(shim, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// /bin is /usr/bin on Debian; /sbin is /usr/sbin, which has no
	// systemd-run.
	return strings.Join([]string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", shim}, ":")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// spec is one spec of ginkgo's JSON report, the fields this test reads.
type spec struct {
	Containers []string `json:"ContainerHierarchyTexts"`
	Leaf       string   `json:"LeafNodeText"`
	LeafType   string   `json:"LeafNodeType"`
	State      string
	RunTime    int64
	Failure    *struct {
		Message string
	}
}

func (s spec) name() string {
	return strings.Join(append(append([]string{}, s.Containers...), s.Leaf), " ")
}

// group is the spec's group in the summary: its outermost container.
func (s spec) group() string {
	if len(s.Containers) == 0 {
		return s.Leaf
	}
	return s.Containers[0]
}

// message is the first line of the failure or skip message.
func (s spec) message() string {
	if s.Failure == nil {
		return ""
	}
	m, _, _ := strings.Cut(strings.TrimSpace(s.Failure.Message), "\n")
	return m
}

// selected reports whether the focus and skip patterns chose the spec:
// ginkgo reports the others as skipped too, without a message and without
// having run.
func (s spec) selected() bool {
	return s.State != "skipped" || s.message() != ""
}

func readReport(path string) ([]spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reports []struct {
		SpecReports []spec
	}
	if err := json.Unmarshal(data, &reports); err != nil {
		return nil, err
	}
	var specs []spec
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if s.LeafType == "It" {
				specs = append(specs, s)
			}
		}
	}
	return specs, nil
}

type counts struct{ passed, failed, skipped, notSelected int }

// summarize prints a line per group and returns the totals. Anything but
// passed and skipped (failed, panicked, timedout, interrupted, aborted)
// counts as failed.
func summarize(specs []spec) counts {
	groups := map[string]*counts{}
	var total counts
	for _, s := range specs {
		g := groups[s.group()]
		if g == nil {
			g = &counts{}
			groups[s.group()] = g
		}
		for _, c := range []*counts{g, &total} {
			switch {
			case !s.selected():
				c.notSelected++
			case s.State == "passed":
				c.passed++
			case s.State == "skipped":
				c.skipped++
			default:
				c.failed++
			}
		}
	}
	names := make([]string, 0, len(groups))
	for n, g := range groups {
		if g.passed+g.failed+g.skipped > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		g := groups[n]
		fmt.Printf("node-e2e: %-70s %3d passed, %3d failed, %3d skipped\n", n, g.passed, g.failed, g.skipped)
	}
	for _, s := range specs {
		if s.selected() && s.State != "passed" {
			fmt.Printf("node-e2e: %s: %s: %s\n", strings.ToUpper(s.State), s.name(), s.message())
		}
	}
	return total
}

// writeResults writes one line per selected spec: state, name, message.
func writeResults(t *testing.T, path string, specs []spec) {
	var b strings.Builder
	for _, s := range specs {
		if s.selected() {
			fmt.Fprintf(&b, "%s\t%s\t%s\n", s.State, s.name(), s.message())
		}
	}
	writeFile(t, path, b.String())
}
