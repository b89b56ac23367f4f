// Package framework starts real Berth processes against a real Docker Engine
// for the end-to-end, torture and benchmark suites, and gives them the CRI
// clients kubelet uses (k8s.io/cri-client).
package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

// RequestTimeout is the per-call timeout of the CRI clients, kubelet's
// default (Scaled on a slow node).
var RequestTimeout = Scaled(2 * time.Minute)

var (
	buildMu sync.Mutex               // guards builds
	builds  = map[buildKind]*build{} // by race detector and test hooks

	tempMu   sync.Mutex // guards tempDirs
	tempDirs []string   // directories the framework made; Cleanup removes them
)

// tempDir makes a temporary directory that Cleanup removes.
func tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	tempMu.Lock()
	tempDirs = append(tempDirs, dir)
	tempMu.Unlock()
	return dir, nil
}

// Cleanup removes the directories the framework made (the built berth
// binary, the socket and root dirs of berths started without Options.Dir).
// A suite's TestMain calls it after every berth has stopped: the suite runs
// once per Docker engine in CI, and each run would otherwise leave a berth
// binary and a directory per berth in /tmp.
func Cleanup() error {
	tempMu.Lock()
	defer tempMu.Unlock()
	var errs []error
	for _, dir := range tempDirs {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	tempDirs = nil
	return errors.Join(errs...)
}

// RepoRoot returns the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

type build struct {
	path string
	err  error
}

// buildKind is how a berth binary is built.
type buildKind struct {
	race  bool // with the race detector
	hooks bool // with -tags berth_testhooks (internal/panics)
}

// Binary builds cmd/berth once per test process (with the race detector when
// BERTH_TEST_RACE=1) and returns its path. BERTH_TEST_BINARY overrides it.
func Binary() (string, error) {
	return binary(buildKind{race: os.Getenv("BERTH_TEST_RACE") == "1"})
}

// binary builds cmd/berth of one kind, once each. BERTH_TEST_BINARY
// replaces every kind but the test-hooks build.
func binary(kind buildKind) (string, error) {
	if p := os.Getenv("BERTH_TEST_BINARY"); p != "" && !kind.hooks {
		return p, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := builds[kind]; ok {
		return b.path, b.err
	}
	b := &build{}
	builds[kind] = b
	dir, err := tempDir("berth-bin-")
	if err != nil {
		b.err = err
		return "", err
	}
	b.path = filepath.Join(dir, "berth")
	args := []string{"build", "-o", b.path}
	if kind.race {
		args = append(args, "-race")
	}
	if kind.hooks {
		args = append(args, "-tags", "berth_testhooks")
	}
	args = append(args, "./cmd/berth")
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = fmt.Errorf("go build: %v\n%s", err, out)
	}
	return b.path, b.err
}

// DockerHost is the Docker endpoint the suites run against:
// BERTH_TEST_DOCKER_HOST, else the system daemon.
func DockerHost() string {
	if h := os.Getenv("BERTH_TEST_DOCKER_HOST"); h != "" {
		return h
	}
	return "unix:///var/run/docker.sock"
}

// Berth is a berth serve process under test.
type Berth struct {
	Endpoint string
	Socket   string
	RootDir  string
	Args     []string
	Wrapper  []string
	Env      []string // added to the environment

	bin     string
	cmd     *exec.Cmd
	log     *lockedBuffer
	exited  chan struct{}
	exitErr error

	Runtime internalapi.RuntimeService
	Images  internalapi.ImageManagerService
	// Conn is a raw gRPC connection, for calls the cri-client does not
	// expose as such (and to see the exact status codes).
	Conn          *grpc.ClientConn
	RuntimeClient runtimeapi.RuntimeServiceClient
	ImageClient   runtimeapi.ImageServiceClient
}

// Options configure StartBerth.
type Options struct {
	// Args are extra flags for berth serve; they override the defaults.
	Args []string
	// Dir is where the socket and root dir go; a fresh temp dir by default.
	Dir string
	// NoWait returns as soon as the process started, without waiting for
	// the socket or connecting clients.
	NoWait bool
	// Wrapper is a command berth runs under (e.g. systemd-socket-activate);
	// the berth binary and its arguments are appended to it.
	Wrapper []string
	// NoRace runs a build without the race detector even when
	// BERTH_TEST_RACE=1: for figures (RSS) the detector would distort.
	NoRace bool
	// TestHooks runs a build with -tags berth_testhooks, whose
	// BERTH_TEST_PANIC (in Env) injects panics (internal/panics).
	TestHooks bool
	// Env are extra environment variables (KEY=value) for berth, on top
	// of the test process's own.
	Env []string
}

// StartBerth starts berth serve against DockerHost() on a private socket and
// root dir and connects the CRI clients. It is stopped when tb ends.
func StartBerth(tb testing.TB, opts Options) *Berth {
	tb.Helper()
	b, err := Start(opts)
	if err != nil {
		tb.Fatalf("starting berth: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Stop(); err != nil {
			tb.Errorf("stopping berth: %v", err)
		}
		if tb.Failed() {
			tb.Logf("berth log:\n%s", b.Log())
		}
	})
	return b
}

// Start is StartBerth for callers without a testing.TB; call Stop when done.
func Start(opts Options) (*Berth, error) {
	kind := buildKind{race: os.Getenv("BERTH_TEST_RACE") == "1" && !opts.NoRace, hooks: opts.TestHooks}
	bin, err := binary(kind)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		// Unix socket paths are limited to 108 bytes: keep the dir short.
		if dir, err = tempDir("bt-"); err != nil {
			return nil, err
		}
	}
	b := &Berth{
		Socket:  filepath.Join(dir, "berth.sock"),
		RootDir: filepath.Join(dir, "root"),
		log:     &lockedBuffer{},
		exited:  make(chan struct{}),
		Wrapper: opts.Wrapper,
		Env:     opts.Env,
		bin:     bin,
	}
	b.Endpoint = "unix://" + b.Socket
	b.Args = append([]string{"serve",
		"--container-runtime-endpoint", b.Endpoint,
		"--root-dir", b.RootDir,
		"--docker-endpoint", DockerHost(),
		"--log-level", "debug",
		// Berth's bound on Docker calls stretches with the clients' (a slow
		// machine, e.g. make test-cgroupv2's emulated one); 2m at scale 1,
		// Berth's default.
		"--runtime-request-timeout", RequestTimeout.String(),
	}, opts.Args...)
	if err := b.start(); err != nil {
		return nil, err
	}
	if opts.NoWait {
		return b, nil
	}
	if err := b.connect(); err != nil {
		_ = b.Stop()
		return nil, fmt.Errorf("%w\nberth log:\n%s", err, b.Log())
	}
	return b, nil
}

func (b *Berth) start() error {
	argv := append(append(append([]string{}, b.Wrapper...), b.bin), b.Args...)
	b.cmd = exec.Command(argv[0], argv[1:]...)
	if len(b.Env) > 0 {
		b.cmd.Env = append(os.Environ(), b.Env...)
	}
	b.cmd.Stdout = b.log
	b.cmd.Stderr = b.log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		return err
	}
	b.exited = make(chan struct{})
	go func() {
		b.exitErr = b.cmd.Wait()
		close(b.exited)
	}()
	return nil
}

// Restart starts the same berth again (after Stop or Kill), reusing the
// socket and root dir, and reconnects the clients.
func (b *Berth) Restart() error {
	b.closeClients()
	if err := b.start(); err != nil {
		return err
	}
	return b.connect()
}

// WaitForSocket waits until the socket accepts connections or the process exits.
func (b *Berth) WaitForSocket(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			return fmt.Errorf("berth exited early: %v", b.exitErr)
		default:
		}
		if c, err := net.Dial("unix", b.Socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("berth's socket %s did not come up in %v", b.Socket, timeout)
}

func (b *Berth) connect() error {
	if err := b.WaitForSocket(Scaled(30 * time.Second)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+b.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return err
	}
	b.Conn = conn
	b.RuntimeClient = runtimeapi.NewRuntimeServiceClient(conn)
	b.ImageClient = runtimeapi.NewImageServiceClient(conn)
	// The cri-clients check Version and ImageFsInfo when they connect,
	// which need Docker and (ImageFsInfo) the state recovered from it;
	// recovery can outlast the readiness gate's wait on a loaded machine
	// with many containers: wait for both before building them.
	for _, call := range []struct {
		name string
		fn   func() error
	}{
		{"Version", func() error { _, err := b.RuntimeClient.Version(ctx, &runtimeapi.VersionRequest{}); return err }},
		{"ImageFsInfo", func() error { _, err := b.ImageClient.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); return err }},
	} {
		for {
			err := call.fn()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("berth never answered %s: %w", call.name, err)
			case <-b.exited:
				return fmt.Errorf("berth exited: %v", b.exitErr)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if b.Runtime, err = remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint(b.Endpoint).WithConnectionTimeout(RequestTimeout).
		WithTracerProvider(nil).Build(ctx); err != nil {
		return err
	}
	// The image client checks ImageFsInfo when it connects.
	if b.Images, err = remote.NewRemoteImageServiceBuilder().
		WithEndpoint(b.Endpoint).WithConnectionTimeout(RequestTimeout).
		WithTracerProvider(nil).Build(ctx); err != nil {
		return err
	}
	return nil
}

func (b *Berth) closeClients() {
	ctx := context.Background()
	if b.Runtime != nil {
		_ = b.Runtime.Close(ctx)
		b.Runtime = nil
	}
	if b.Images != nil {
		_ = b.Images.Close(ctx)
		b.Images = nil
	}
	if b.Conn != nil {
		_ = b.Conn.Close()
		b.Conn = nil
	}
}

// Signal sends sig to the berth process.
func (b *Berth) Signal(sig os.Signal) error { return b.cmd.Process.Signal(sig) }

// Pid returns the berth process's id.
func (b *Berth) Pid() int { return b.cmd.Process.Pid }

// Wait waits up to timeout for the process to exit and returns its error
// (nil for exit status 0).
func (b *Berth) Wait(timeout time.Duration) error {
	select {
	case <-b.exited:
		return b.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("berth (pid %d) did not exit within %v", b.cmd.Process.Pid, timeout)
	}
}

// Exited reports whether the process has exited.
func (b *Berth) Exited() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it.
func (b *Berth) Kill() error {
	b.closeClients()
	if b.Exited() {
		return nil
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	return nil
}

// Stop stops the process with SIGTERM and expects a clean exit (status 0).
func (b *Berth) Stop() error {
	b.closeClients()
	if b.Exited() {
		return nil
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.Wait(Scaled(30 * time.Second)); err != nil {
		_ = b.cmd.Process.Kill()
		<-b.exited
		return err
	}
	return nil
}

// Log returns everything the process has written so far.
func (b *Berth) Log() string { return b.log.String() }

// WaitForLog waits until the log contains s.
func (b *Berth) WaitForLog(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(b.Log(), s) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("berth's log never contained %q", s)
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// ErrNoDocker is returned by RequireDocker when the daemon does not answer.
var ErrNoDocker = errors.New("docker is not reachable")

// ConnectCRI connects a runtime client to another CRI runtime (containerd,
// for the benchmarks that compare with it); it is closed when tb ends.
func ConnectCRI(tb testing.TB, endpoint string) internalapi.RuntimeService {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).
		WithConnectionTimeout(RequestTimeout).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", endpoint, err)
	}
	tb.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}
