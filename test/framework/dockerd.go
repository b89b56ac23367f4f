package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Dockerd is a private Docker daemon a test starts, stops and restarts
// without touching the system daemon: it has its own socket, data root, exec
// root, managed containerd, config file and bridge, and leaves iptables
// alone.
type Dockerd struct {
	Binary string
	Dir    string
	Host   string
	Bridge string
	Args   []string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedBuffer
}

// DockerdBinary is the dockerd a private daemon runs when the test names
// none: BERTH_TEST_DOCKERD_BINARY (the engine the suite runs against, set by
// `hack/setup-docker-current.sh env`), else Debian's.
func DockerdBinary() string {
	if b := os.Getenv("BERTH_TEST_DOCKERD_BINARY"); b != "" {
		return b
	}
	return "/usr/sbin/dockerd"
}

// DockerdArgs are the flags that engine needs beyond a private daemon's own
// paths (BERTH_TEST_DOCKERD_ARGS, space-separated), e.g. the current
// engine's runc as its default runtime.
func DockerdArgs() []string {
	return strings.Fields(os.Getenv("BERTH_TEST_DOCKERD_ARGS"))
}

// CheckDockerdBinary fails unless DockerdBinary is the same Docker version
// as the daemon the suite runs against (version as that daemon reports it),
// so the tests that start private daemons test the same engine as the rest.
func CheckDockerdBinary(version string) error {
	bin := DockerdBinary()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %v: %s", bin, err, out)
	}
	if !strings.Contains(string(out), "version "+version+",") {
		return fmt.Errorf("private daemons would run %s (%s) but the suite's daemon is Docker %s: set BERTH_TEST_DOCKERD_BINARY (eval \"$(hack/setup-docker-current.sh env)\" for the current engine)",
			bin, strings.TrimSpace(string(out)), version)
	}
	return nil
}

// StartDockerd starts a private daemon with binary and extra args; it is
// stopped and its files removed when tb ends. An empty binary means the
// engine the suite runs against (DockerdBinary, with DockerdArgs), so a test
// of daemon restarts exercises the same Docker version as the rest.
func StartDockerd(tb testing.TB, binary string, extraArgs ...string) *Dockerd {
	tb.Helper()
	return StartDockerdUnder(tb, "", binary, extraArgs...)
}

// StartDockerdUnder is StartDockerd with the daemon's directory (socket,
// data root, exec root) made below parent instead of the temporary
// directory. Docker refuses a bind mount whose source holds its data root
// (unless it is rslave or rshared), so a suite whose pods mount the host's
// /tmp, as the node e2e suite's HostPath specs do, keeps the daemon out of
// it, where a node keeps it too (/var/lib/docker).
func StartDockerdUnder(tb testing.TB, parent, binary string, extraArgs ...string) *Dockerd {
	tb.Helper()
	if binary == "" {
		binary = DockerdBinary()
		extraArgs = append(DockerdArgs(), extraArgs...)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	dir, err := os.MkdirTemp(parent, "bd-")
	if err != nil {
		tb.Fatal(err)
	}
	// Searchable by everyone: with --userns-remap, the containers' root
	// (a remapped uid) must reach the data root below it.
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	// An empty config file of its own, so /etc/docker/daemon.json (the
	// system daemon's configuration) never leaks into it.
	config := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		tb.Fatal(err)
	}
	d := &Dockerd{
		Binary: binary,
		Dir:    dir,
		Host:   "unix://" + filepath.Join(dir, "d.sock"),
		Bridge: "bd" + suffix,
		log:    &lockedBuffer{},
	}
	// A daemon started with --bridge=none deletes the host's docker0, so
	// the private daemon gets a bridge of its own instead.
	n, _ := rand.Int(rand.Reader, big.NewInt(200))
	cidr := fmt.Sprintf("10.231.%d.1/24", n.Int64()+20)
	for _, args := range [][]string{
		{"link", "add", d.Bridge, "type", "bridge"},
		{"addr", "add", cidr, "dev", d.Bridge},
		{"link", "set", d.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = exec.Command("ip", "link", "del", d.Bridge).Run()
			tb.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	d.Args = append([]string{
		"--config-file", config,
		"--host", d.Host,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "x"),
		"--pidfile", filepath.Join(dir, "d.pid"),
		"--bridge", d.Bridge,
		"--iptables=false", "--ip-masq=false", "--ip-forward=false",
		"--log-level", "warn",
	}, extraArgs...)
	tb.Cleanup(func() {
		d.Stop(tb)
		// A daemon with --live-restore leaves its data root mounted.
		unmountUnder(dir)
		_ = exec.Command("ip", "link", "del", d.Bridge).Run()
		if err := os.RemoveAll(dir); err != nil {
			tb.Logf("removing %s: %v", dir, err)
		}
		if tb.Failed() {
			tb.Logf("private dockerd log:\n%s", d.log.String())
		}
	})
	d.Start(tb)
	return d
}

// Start starts the daemon (again) and waits until it answers.
func (d *Dockerd) Start(tb testing.TB) {
	tb.Helper()
	d.cmd = exec.Command(d.Binary, d.Args...)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", d.Binary, err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(d.cmd, d.exited)

	c, err := client.New(client.WithHost(d.Host))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	wait := Scaled(60 * time.Second)
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.exited:
			tb.Fatalf("private dockerd exited: %s", d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("private dockerd did not answer within %v: %v\n%s", wait, err, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid returns the daemon's process id (of its current start).
func (d *Dockerd) Pid() int { return d.cmd.Process.Pid }

// Stop stops the daemon with SIGTERM and waits for it to exit.
func (d *Dockerd) Stop(tb testing.TB) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(Scaled(30 * time.Second)):
		tb.Logf("private dockerd did not stop on SIGTERM; killing pid %d", d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// LoadImage copies ref from the suite's Docker (DockerHost) into this
// daemon, so that its containers can use the test images without a pull.
func (d *Dockerd) LoadImage(tb testing.TB, ref string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(2*time.Minute))
	defer cancel()
	from, to := dockerClientFor(tb, ""), dockerClientFor(tb, d.Host)
	saved, err := from.ImageSave(ctx, []string{ref})
	if err != nil {
		tb.Fatalf("saving %s: %v", ref, err)
	}
	defer saved.Close()
	loaded, err := to.ImageLoad(ctx, saved)
	if err != nil {
		tb.Fatalf("loading %s into the private dockerd: %v", ref, err)
	}
	defer loaded.Close()
	out, err := io.ReadAll(loaded)
	if err != nil || bytes.Contains(out, []byte(`"errorDetail"`)) {
		tb.Fatalf("loading %s into the private dockerd: %v %s", ref, err, out)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
