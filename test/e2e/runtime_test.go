package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, err := berth.Runtime.Version(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	want, err := dc.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "docker" || v.RuntimeVersion != want.Version || v.RuntimeApiVersion != "v1" || v.Version != "0.1.0" {
		t.Errorf("Version = %+v, want runtime docker %s, API v1", v, want.Version)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := berth.Runtime.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	cond := conditions(st)
	if c := cond[runtimeapi.RuntimeReady]; c == nil || !c.Status {
		t.Errorf("RuntimeReady = %v, want true", c)
	}
	if c := cond[runtimeapi.NetworkReady]; c == nil {
		t.Errorf("NetworkReady condition missing")
	}
	if len(st.RuntimeHandlers) == 0 || st.RuntimeHandlers[0].Name != "" {
		t.Errorf("runtime handlers = %v, want the default handler first", st.RuntimeHandlers)
	}
	if !hasHandler(st, "runc") {
		t.Errorf("runtime handlers = %v, want Docker's runc", st.RuntimeHandlers)
	}
	if st.Features == nil {
		t.Errorf("features missing")
	}
	var daemon struct {
		Version              string `json:"version"`
		NegotiatedAPIVersion string `json:"negotiatedAPIVersion"`
	}
	if err := json.Unmarshal([]byte(st.Info["docker"]), &daemon); err != nil || daemon.Version == "" || daemon.NegotiatedAPIVersion == "" {
		t.Errorf("verbose info docker = %q (%v), want the daemon's version and API", st.Info["docker"], err)
	}
	if !strings.Contains(st.Info["oomScoreAdj"], `"clamp":`) {
		t.Errorf("verbose info oomScoreAdj = %q", st.Info["oomScoreAdj"])
	}
	if !strings.Contains(st.Info["config"], berth.RootDir) {
		t.Errorf("verbose info config = %q, want Berth's config", st.Info["config"])
	}
}

// TestStatusReportsTheDaemon checks the daemon description in Status's
// verbose info against Docker's own answers, on whichever engine the suite
// runs against (the classic image store on Docker 20.10, the containerd
// image store on current Docker).
func TestStatusReportsTheDaemon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := berth.Runtime.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version              string   `json:"version"`
		APIVersion           string   `json:"apiVersion"`
		MinAPIVersion        string   `json:"minAPIVersion"`
		NegotiatedAPIVersion string   `json:"negotiatedAPIVersion"`
		CgroupDriver         string   `json:"cgroupDriver"`
		CgroupVersion        string   `json:"cgroupVersion"`
		Runtimes             []string `json:"runtimes"`
		DefaultRuntime       string   `json:"defaultRuntime"`
		StorageDriver        string   `json:"storageDriver"`
		ContainerdImageStore bool     `json:"containerdImageStore"`
	}
	if err := json.Unmarshal([]byte(st.Info["docker"]), &got); err != nil {
		t.Fatalf("verbose info docker = %q: %v", st.Info["docker"], err)
	}
	dc, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	ver, err := dc.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := dc.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info := res.Info
	// Berth speaks the newest API both it and the daemon know.
	wantAPI := ver.APIVersion
	if versions.LessThan(client.MaxAPIVersion, wantAPI) {
		wantAPI = client.MaxAPIVersion
	}
	wantCgroupVersion := info.CgroupVersion
	if wantCgroupVersion == "" {
		wantCgroupVersion = "1" // Docker 20.10 on cgroup v1 leaves it out
	}
	containerdStore := false
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && strings.HasPrefix(kv[1], "io.containerd.snapshotter") {
			containerdStore = true
		}
	}
	for _, c := range []struct{ field, got, want string }{
		{"version", got.Version, ver.Version},
		{"apiVersion", got.APIVersion, ver.APIVersion},
		{"minAPIVersion", got.MinAPIVersion, ver.MinAPIVersion},
		{"negotiatedAPIVersion", got.NegotiatedAPIVersion, wantAPI},
		{"cgroupDriver", got.CgroupDriver, info.CgroupDriver},
		{"cgroupVersion", got.CgroupVersion, wantCgroupVersion},
		{"defaultRuntime", got.DefaultRuntime, info.DefaultRuntime},
		{"storageDriver", got.StorageDriver, info.Driver},
		{"runtimes", strings.Join(got.Runtimes, ","), strings.Join(slices.Sorted(maps.Keys(info.Runtimes)), ",")},
	} {
		if c.got != c.want {
			t.Errorf("verbose info docker.%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if got.ContainerdImageStore != containerdStore {
		t.Errorf("verbose info docker.containerdImageStore = %v, want %v (driver status %v)", got.ContainerdImageStore, containerdStore, info.DriverStatus)
	}
	if versions.LessThan(got.NegotiatedAPIVersion, "1.41") {
		t.Errorf("negotiated API %s is older than Berth's minimum 1.41 yet RuntimeReady", got.NegotiatedAPIVersion)
	}
	t.Logf("Docker %s: API %s (min %s), Berth speaks %s; containerd image store %v; cgroup v%s (%s)",
		got.Version, got.APIVersion, got.MinAPIVersion, got.NegotiatedAPIVersion, got.ContainerdImageStore, got.CgroupVersion, got.CgroupDriver)
}

func TestStatusNetworkNotReadyWithoutCNIConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := framework.StartBerth(t, framework.Options{Args: []string{"--cni-conf-dir", t.TempDir()}})
	st, err := b.Runtime.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	c := conditions(st)[runtimeapi.NetworkReady]
	if c == nil || c.Status || c.Reason == "" || !strings.Contains(c.Message, "no CNI network configuration") {
		t.Errorf("NetworkReady = %v, want false with the reason", c)
	}
}

func TestRuntimeConfigReportsDockerCgroupDriver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc, err := berth.Runtime.RuntimeConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	info, err := dc.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := runtimeapi.CgroupDriver_CGROUPFS
	if info.Info.CgroupDriver == "systemd" {
		want = runtimeapi.CgroupDriver_SYSTEMD
	}
	if got := rc.GetLinux().GetCgroupDriver(); got != want {
		t.Errorf("cgroup driver = %v, want %v (docker info says %q)", got, want, info.Info.CgroupDriver)
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	err := berth.Runtime.UpdateRuntimeConfig(ctx, &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.7.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := berth.Runtime.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Info["podCIDR"] != "10.244.7.0/24" {
		t.Errorf("podCIDR = %q after UpdateRuntimeConfig", st.Info["podCIDR"])
	}
	_, err = berth.RuntimeClient.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "not-a-cidr"}}})
	wantCode(t, err, codes.InvalidArgument, "pod_cidr")
	// Nothing to update is not an error.
	if _, err := berth.RuntimeClient.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{}); err != nil {
		t.Errorf("empty UpdateRuntimeConfig: %v", err)
	}
}

func TestSocketPermissions(t *testing.T) {
	t.Parallel()
	b := framework.StartBerth(t, framework.Options{Args: []string{"--socket-group", "daemon"}})
	fi, err := os.Stat(b.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, want a socket with 0660", fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Gid != 1 { // Debian's "daemon" group is gid 1.
		t.Errorf("socket owner = %d:%d, want 0:1", st.Uid, st.Gid)
	}
	// The default keeps root's group.
	fi, err = os.Stat(berth.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("default socket = %v %d:%d, want 0660 root:root", fi.Mode(), st.Uid, st.Gid)
	}
}

func TestSocketParentDirectoryCreated(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	b := framework.StartBerth(t, framework.Options{Args: []string{"--container-runtime-endpoint", "unix://" + dir + "/berth.sock"}, NoWait: true})
	b.Socket = dir + "/berth.sock"
	if err := b.WaitForSocket(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "berth.sock")
	// A socket file nobody listens on, as a crashed run leaves it.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	b := framework.StartBerth(t, framework.Options{Dir: dir})
	if _, err := b.Runtime.Version(context.Background(), "v1"); err != nil {
		t.Fatalf("Version on the replaced socket: %v", err)
	}
}

func TestLiveSocketIsNotTakenOver(t *testing.T) {
	t.Parallel()
	dir := filepath.Dir(berth.Socket)
	second, err := framework.Start(framework.Options{Dir: dir, NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Wait(30 * time.Second)
	if err == nil {
		t.Fatalf("a second berth on a live socket exited 0")
	}
	if !strings.Contains(second.Log(), "in use by another process") {
		t.Errorf("second berth's error does not say the socket is in use:\n%s", second.Log())
	}
	// The first berth still serves.
	if _, err := berth.Runtime.Version(context.Background(), "v1"); err != nil {
		t.Errorf("the first berth stopped answering: %v", err)
	}
}

func TestSocketPathThatIsNotASocketIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "berth.sock"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := framework.Start(framework.Options{Dir: dir, NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(30 * time.Second); err == nil || !strings.Contains(b.Log(), "is not a socket") {
		t.Errorf("exit = %v, log:\n%s", err, b.Log())
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "berth.sock")); string(data) != "x" {
		t.Errorf("the file was modified")
	}
}

func TestBadFlagsFailAtStartup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"--runtime-request-timeout", "soon"}, "runtime-request-timeout"},
		{[]string{"--network-plugin", "kubenet"}, "--network-plugin"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--container-runtime-endpoint", "tcp://1.2.3.4:5"}, "--container-runtime-endpoint"},
		{[]string{"--streaming-bind-addr", "nowhere:port"}, "--streaming-bind-addr"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			b, err := framework.Start(framework.Options{Args: tc.args, NoWait: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Wait(30 * time.Second); err == nil {
				t.Fatalf("berth %v exited 0", tc.args)
			}
			if !strings.Contains(b.Log(), tc.want) {
				t.Errorf("error does not mention %q:\n%s", tc.want, b.Log())
			}
		})
	}
}

func TestCriDockerdRootDirectoryAlias(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "legacy-root")
	b := framework.StartBerth(t, framework.Options{Args: []string{"--cri-dockerd-root-directory", root}})
	st, err := b.Runtime.Status(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Info["config"], root) {
		t.Errorf("config %s does not use %s", st.Info["config"], root)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root dir not created: %v", err)
	}
}

func TestGracefulShutdownDrainsInFlightCalls(t *testing.T) {
	// With Docker unreachable the readiness gate holds a gated call for up
	// to 10 s: an in-flight call SIGTERM must wait for.
	dir := t.TempDir()
	b, err := framework.Start(framework.Options{Dir: dir, NoWait: true,
		Args: []string{"--docker-endpoint", "unix://" + filepath.Join(dir, "no-docker.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Kill() })
	if err := b.WaitForSocket(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	rc := rawClient(t, b.Socket)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := rc.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // let the call reach the gate
	if err := b.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "Docker") {
		t.Errorf("in-flight call ended with %v, want Unavailable naming Docker", err)
	}
	if elapsed := time.Since(start); elapsed < 5*time.Second {
		t.Errorf("in-flight call was cut off after %v instead of being drained", elapsed)
	}
	if err := b.Wait(30 * time.Second); err != nil {
		t.Errorf("berth did not exit 0 after SIGTERM: %v\n%s", err, b.Log())
	}
	if _, err := os.Stat(b.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
}

func TestShutdownTimeoutBoundsDraining(t *testing.T) {
	dir := t.TempDir()
	b, err := framework.Start(framework.Options{Dir: dir, NoWait: true,
		Args: []string{"--docker-endpoint", "unix://" + filepath.Join(dir, "no-docker.sock"), "--shutdown-timeout", "1s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Kill() })
	if err := b.WaitForSocket(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	rc := rawClient(t, b.Socket)
	done := make(chan error, 1)
	go func() {
		_, err := rc.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if err := b.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(8 * time.Second); err != nil {
		t.Errorf("berth did not exit 0 within the shutdown timeout: %v", err)
	}
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Errorf("cut-off call = %v, want Unavailable", err)
	}
}

func TestStatusFollowsDockerRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := framework.StartDockerd(t, "")
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", d.Host}})
	if c := mustStatus(t, b)[runtimeapi.RuntimeReady]; !c.Status {
		t.Fatalf("RuntimeReady = %v with Docker up", c)
	}

	d.Stop(t)
	c := mustStatus(t, b)[runtimeapi.RuntimeReady]
	if c.Status || c.Reason != "DockerUnavailable" || !strings.Contains(c.Message, "Docker") {
		t.Errorf("RuntimeReady = %v with Docker stopped, want false with the reason", c)
	}
	// Calls that need Docker answer Unavailable rather than hang.
	callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err := b.RuntimeClient.Version(callCtx, &runtimeapi.VersionRequest{})
	cancel()
	wantCode(t, err, codes.Unavailable, "Docker")
	_, err = b.RuntimeClient.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	wantCode(t, err, codes.Unavailable, "Docker")

	d.Start(t)
	c = mustStatus(t, b)[runtimeapi.RuntimeReady]
	if !c.Status {
		t.Errorf("RuntimeReady = %v after Docker came back, want true without restarting Berth", c)
	}
	if _, err := b.Runtime.Version(ctx, "v1"); err != nil {
		t.Errorf("Version after Docker came back: %v", err)
	}
	if b.Exited() {
		t.Errorf("berth exited while Docker was away")
	}
}

func TestDockerDownAtStartup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := framework.Start(framework.Options{Dir: dir, NoWait: true,
		Args: []string{"--docker-endpoint", "unix://" + filepath.Join(dir, "later.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	if err := b.WaitForSocket(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	rc := rawClient(t, b.Socket)
	st, err := rc.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status with Docker down: %v", err)
	}
	if c := conditions(st)[runtimeapi.RuntimeReady]; c.Status || !strings.Contains(c.Message, "later.sock") {
		t.Errorf("RuntimeReady = %v, want false naming the endpoint", c)
	}
	time.Sleep(time.Second)
	if b.Exited() {
		t.Fatalf("berth exited with Docker down:\n%s", b.Log())
	}
}

func TestUnimplementedRPCsAnswerUnimplemented(t *testing.T) {
	t.Parallel()
	_, err := berth.RuntimeClient.CheckpointPod(context.Background(), &runtimeapi.CheckpointPodRequest{PodSandboxId: "x"})
	wantCode(t, err, codes.Unimplemented, "")
	// A method of a CRI version Berth does not serve (v1alpha2, as very
	// old kubelets call) is Unimplemented too, so a client falls back.
	err = berth.Conn.Invoke(context.Background(), "/runtime.v1alpha2.RuntimeService/Version",
		&runtimeapi.VersionRequest{}, &runtimeapi.VersionResponse{})
	wantCode(t, err, codes.Unimplemented, "")
}

func mustStatus(t *testing.T, b *framework.Berth) map[string]*runtimeapi.RuntimeCondition {
	t.Helper()
	st, err := b.RuntimeClient.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return conditions(st)
}

func conditions(st *runtimeapi.StatusResponse) map[string]*runtimeapi.RuntimeCondition {
	m := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.GetStatus().GetConditions() {
		m[c.Type] = c
	}
	return m
}

func hasHandler(st *runtimeapi.StatusResponse, name string) bool {
	for _, h := range st.RuntimeHandlers {
		if h.Name == name {
			return true
		}
	}
	return false
}

// wantCode fails t unless err has the gRPC code and its message contains msg.
func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("error = %v (%v), want %v containing %q", err, st.Code(), code, msg)
	}
}

func TestSystemdSocketActivation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "activated.sock")
	// systemd-socket-activate listens, and on the first connection execs
	// berth with the listening socket passed as systemd does (LISTEN_FDS).
	b := framework.StartBerth(t, framework.Options{
		Dir:     dir,
		Wrapper: []string{"systemd-socket-activate", "-l", sock},
		Args:    []string{"--container-runtime-endpoint", "fd://"},
		NoWait:  true,
	})
	b.Socket = sock
	rc := rawClient(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		v, err := rc.Version(ctx, &runtimeapi.VersionRequest{})
		if err == nil {
			if v.RuntimeName != "docker" {
				t.Errorf("Version over fd:// = %+v", v)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no Version over the activated socket: %v\n%s", err, b.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(b.Log(), "serving CRI") {
		t.Errorf("berth did not serve on the passed socket:\n%s", b.Log())
	}
}
