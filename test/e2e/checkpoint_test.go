package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Checkpointing processes needs Docker's checkpoint API (an experimental
// daemon) and a CRIU that works on the kernel. On this project's machines
// Debian's CRIU 3.17 fails on kernels that split the vDSO data into
// [vvar] and [vvar_vclock] (Linux 6.13 and newer), so the tests here show
// the refusals, and the checkpoint and restore of files (the option
// process-state=omit) end to end.

// tarMembers reads a tar file into name → contents.
func tarMembers(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading a tar: %v", err)
		}
		data, _ := io.ReadAll(tr)
		out[hdr.Name] = data
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCheckpointContainerNeedsDockersCheckpointAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ckpt-ctr")
	id := p.run(t, containerConfig("app", "echo hi > /hello; exec sleep 3600"))
	dir := t.TempDir()
	loc := filepath.Join(dir, "checkpoint-app.tar")
	for _, tc := range []struct {
		name string
		req  *runtimeapi.CheckpointContainerRequest
		code codes.Code
		msg  string
	}{
		{"no id", &runtimeapi.CheckpointContainerRequest{Location: loc}, codes.InvalidArgument, "container_id"},
		{"relative location", &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: "x.tar"}, codes.InvalidArgument, "location"},
		{"no such directory", &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: "/no/such/dir/x.tar"}, codes.InvalidArgument, "location"},
		{"unknown container", &runtimeapi.CheckpointContainerRequest{ContainerId: "nope-nope", Location: loc}, codes.NotFound, "nope-nope"},
		// The suite's daemons are not experimental.
		{"no checkpoint API", &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc}, codes.FailedPrecondition,
			"checkpointing processes needs Docker's checkpoint API, which only a daemon in experimental mode (dockerd --experimental) with CRIU installed has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := berth.RuntimeClient.CheckpointContainer(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("refused checkpoints left files: %v", names)
	}
}

func TestCheckpointOnAnExperimentalDaemonWithCRIU(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := os.Stat("/usr/sbin/criu"); err != nil {
		t.Fatalf("criu is not installed (hack/setup.sh installs it): %v", err)
	}
	d, b := berthOnPrivateDocker(t, "--experimental")
	pod := podConfig("ckpt-criu")
	pod.LogDirectory = t.TempDir()
	podID := runPod(t, b, pod)
	id, err := b.Runtime.CreateContainer(ctx, podID, containerConfig("app", "echo hi > /hello; exec sleep 3600"), pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Runtime.RemoveContainer(ctx, id) })
	if err := b.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loc := filepath.Join(dir, "checkpoint-app.tar")
	_, err = b.RuntimeClient.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc})
	if err == nil {
		// CRIU works on this kernel: the archive has the processes.
		f, ferr := os.Open(loc)
		if ferr != nil {
			t.Fatal(ferr)
		}
		defer f.Close()
		m := tarMembers(t, f)
		hasImages := false
		for name := range m {
			hasImages = hasImages || strings.HasPrefix(name, "checkpoint/")
		}
		if !hasImages || m["config.dump"] == nil || m["spec.dump"] == nil || m["rootfs-diff.tar"] == nil {
			t.Errorf("archive members: %v", slices.Sorted(func(yield func(string) bool) {
				for k := range m {
					if !yield(k) {
						return
					}
				}
			}))
		}
	} else {
		// Docker's checkpoint API is there; CRIU fails, and the error
		// says so (on these machines: "vdso: Unexpected rt vDSO area
		// bounds" in the CRIU log it names).
		t.Logf("CheckpointContainer on an experimental daemon: %v", err)
		wantCode(t, err, codes.Internal, "dumping the processes (Docker's checkpoint API, CRIU)")
		if !strings.Contains(err.Error(), "criu failed") || !strings.Contains(err.Error(), "CRIU's log says: Error (criu/") {
			t.Errorf("the error does not say why CRIU failed: %v", err)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("a failed checkpoint left files: %v", names)
		}
	}
	// Either way the container was paused for the checkpoint and runs
	// again.
	if out, err := dockerAt(t, d.Host, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", id); err != nil || out != "true false" {
		t.Errorf("after the checkpoint: running/paused = %q %v", out, err)
	}

	// Restoring processes: CRIU cannot make images here, so the test
	// gives a files-only checkpoint a checkpoint/ directory of its own and
	// says it has process state. RestorePod leaves the container CREATED
	// with the images set aside; StartContainer asks Docker to restore
	// from them, and CRIU's refusal comes back.
	out := t.TempDir()
	_, err = b.RuntimeClient.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: []string{id},
		Options: map[string]string{"process-state": "omit"}})
	if err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	addFakeProcessState(t, out, "app")
	restoredPod := podConfig("ckpt-criu-restored")
	restoredPod.LogDirectory = t.TempDir()
	res, err := b.RuntimeClient.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoredPod,
		ContainerConfigs: []*runtimeapi.ContainerConfig{containerConfig("app", "echo hi > /hello; exec sleep 3600")}})
	if err != nil {
		t.Fatalf("RestorePod with process state: %v", err)
	}
	t.Cleanup(func() { removePod(t, b, res.GetPodSandboxId()) })
	rid := res.GetRestoredContainers()[0].GetContainerId()
	// The images wait in Docker's checkpoint directory for the
	// container, the only place Docker restores from.
	root, _ := dockerAt(t, d.Host, "info", "-f", "{{.DockerRootDir}}")
	restoreDir := filepath.Join(root, "containers", rid, "checkpoints", "checkpoint")
	if _, err := os.Stat(filepath.Join(restoreDir, "fake.img")); err != nil {
		t.Errorf("the CRIU images set aside for StartContainer: %v", err)
	}
	if st, err := b.Runtime.ContainerStatus(ctx, rid, false); err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("restored container: %v %v", st, err)
	}
	err = b.Runtime.StartContainer(ctx, rid)
	if err == nil {
		t.Fatalf("StartContainer restored processes from fake CRIU images")
	}
	t.Logf("StartContainer from fake CRIU images: %v", err)
	if !strings.Contains(err.Error(), "criu") {
		t.Errorf("StartContainer: %v, want Docker's CRIU restore error", err)
	}
	if err := b.Runtime.RemoveContainer(ctx, rid); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(restoreDir); !os.IsNotExist(err) {
		t.Errorf("RemoveContainer left the CRIU images in %s (Docker removes them with the container): %v", restoreDir, err)
	}
}

// addFakeProcessState turns a files-only pod checkpoint into one that says
// it has process state, with a checkpoint/ directory in the container's
// archive.
func addFakeProcessState(t *testing.T, dir, name string) {
	t.Helper()
	optsPath := filepath.Join(dir, "pod.options")
	data, err := os.ReadFile(optsPath)
	if err != nil {
		t.Fatal(err)
	}
	var opts map[string]any
	if err := json.Unmarshal(data, &opts); err != nil {
		t.Fatal(err)
	}
	opts["processState"] = true
	data, _ = json.Marshal(opts)
	if err := os.WriteFile(optsPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	archivePath := filepath.Join(dir, "containers", name+".tar")
	old, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(old))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = tw.WriteHeader(hdr)
		_, _ = io.Copy(tw, tr)
	}
	_ = tw.WriteHeader(&tar.Header{Name: "checkpoint/", Typeflag: tar.TypeDir, Mode: 0o700})
	for _, f := range []struct{ name, data string }{
		{"checkpoint/fake.img", "fake"},
		// runc reads the process's standard streams from here before
		// it runs CRIU.
		{"checkpoint/descriptors.json", `["/dev/null","/dev/null","/dev/null"]`},
	} {
		_ = tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(f.data))})
		_, _ = tw.Write([]byte(f.data))
	}
	_ = tw.Close()
	if err := os.WriteFile(archivePath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointAndRestorePodFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "ckpt-pod")
	hostDir := t.TempDir()
	// Restored from files only, a container's command runs again: the
	// scripts change the files once.
	app := containerConfig("app", "[ -e /data/sub/f ] || { mkdir -p /data/sub && echo hello > /data/sub/f && echo extra:x:9:9::/:/bin/sh >> /etc/passwd && rm /etc/group && echo host-only > /mnt/host/h; }; exec sleep 3600")
	app.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt/host", HostPath: hostDir}}
	appID := p.run(t, app)
	side := containerConfig("side", "[ -e /side ] || echo side > /side; exec sleep 3600")
	sideID := p.run(t, side)
	eventually(t, 30*time.Second, func() error {
		if _, err := docker(t, "exec", appID, "test", "-f", "/mnt/host/h"); err != nil {
			return errorf("app has not written its files yet")
		}
		if _, err := docker(t, "exec", sideID, "test", "-f", "/side"); err != nil {
			return errorf("side has not written its file yet")
		}
		return nil
	})

	out := t.TempDir()
	req := func(mod func(*runtimeapi.CheckpointPodRequest)) *runtimeapi.CheckpointPodRequest {
		r := &runtimeapi.CheckpointPodRequest{PodSandboxId: p.id, OutputPath: out, ContainerIds: []string{appID, sideID}, Options: map[string]string{"process-state": "omit"}}
		if mod != nil {
			mod(r)
		}
		return r
	}
	other := newPod(t, berth, "ckpt-other")
	otherID := other.run(t, containerConfig("x", "exec sleep 3600"))
	for _, tc := range []struct {
		name string
		mod  func(*runtimeapi.CheckpointPodRequest)
		code codes.Code
		msg  string
	}{
		{"process state without Docker's checkpoint API", func(r *runtimeapi.CheckpointPodRequest) { r.Options = nil }, codes.FailedPrecondition,
			"checkpointing processes needs Docker's checkpoint API, which only a daemon in experimental mode (dockerd --experimental) with CRIU installed has; this Docker is not in experimental mode (the option process-state=omit checkpoints the files only)"},
		{"unknown option", func(r *runtimeapi.CheckpointPodRequest) { r.Options = map[string]string{"compress": "zstd"} }, codes.InvalidArgument, `"compress" is not an option`},
		{"bad option value", func(r *runtimeapi.CheckpointPodRequest) { r.Options = map[string]string{"process-state": "maybe"} }, codes.InvalidArgument, "include or omit"},
		{"relative output", func(r *runtimeapi.CheckpointPodRequest) { r.OutputPath = "out" }, codes.InvalidArgument, "output_path"},
		{"no containers", func(r *runtimeapi.CheckpointPodRequest) { r.ContainerIds = nil }, codes.InvalidArgument, "container_ids"},
		{"duplicate", func(r *runtimeapi.CheckpointPodRequest) { r.ContainerIds = []string{appID, appID} }, codes.InvalidArgument, "container_ids[1]"},
		{"another pod's container", func(r *runtimeapi.CheckpointPodRequest) { r.ContainerIds = []string{appID, otherID} }, codes.InvalidArgument, "is not in pod"},
		{"unknown pod", func(r *runtimeapi.CheckpointPodRequest) { r.PodSandboxId = "nope-nope" }, codes.NotFound, "pod_sandbox_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := berth.RuntimeClient.CheckpointPod(ctx, req(tc.mod))
			wantCode(t, err, tc.code, tc.msg)
			if names := dirNames(t, out); len(names) != 0 {
				t.Errorf("a refused checkpoint left files: %v", names)
			}
		})
	}

	if _, err := berth.RuntimeClient.CheckpointPod(ctx, req(nil)); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	for _, id := range []string{appID, sideID} {
		if out, _ := docker(t, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", id); out != "true false" {
			t.Errorf("container %s after the checkpoint: running/paused = %q", id, out)
		}
	}
	if _, err := berth.RuntimeClient.CheckpointPod(ctx, req(nil)); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("a second checkpoint into the same directory: %v", err)
	}
	if got := dirNames(t, out); !slices.Equal(got, []string{"containers", "pod.dump", "pod.options"}) {
		t.Fatalf("checkpoint directory = %v", got)
	}
	var opts struct {
		Containers   []string `json:"containers"`
		ProcessState bool     `json:"processState"`
	}
	data, _ := os.ReadFile(filepath.Join(out, "pod.options"))
	if err := json.Unmarshal(data, &opts); err != nil || !slices.Equal(slices.Sorted(slices.Values(opts.Containers)), []string{"app", "side"}) || opts.ProcessState {
		t.Errorf("pod.options = %s (%v)", data, err)
	}

	// The app's archive: CRI-O's layout, its own files only.
	f, err := os.Open(filepath.Join(out, "containers", "app.tar"))
	if err != nil {
		t.Fatal(err)
	}
	members := tarMembers(t, f)
	f.Close()
	var cfgDump struct {
		ID             string `json:"id"`
		Name           string `json:"name"`
		RootfsImageRef string `json:"rootfsImageRef"`
	}
	if err := json.Unmarshal(members["config.dump"], &cfgDump); err != nil || cfgDump.ID != appID || cfgDump.Name != "app" || cfgDump.RootfsImageRef == "" {
		t.Errorf("config.dump = %s (%v)", members["config.dump"], err)
	}
	var specDump struct {
		Process struct {
			Args []string `json:"args"`
		} `json:"process"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(members["spec.dump"], &specDump); err != nil || !slices.Equal(specDump.Process.Args, append([]string{"sh", "-c"}, app.Args...)) ||
		specDump.Annotations["io.kubernetes.cri.sandbox-name"] != "ckpt-pod" {
		t.Errorf("spec.dump = %s (%v)", members["spec.dump"], err)
	}
	if string(members["deleted.files"]) == "" || !strings.Contains(string(members["deleted.files"]), `"/etc/group"`) {
		t.Errorf("deleted.files = %s", members["deleted.files"])
	}
	if _, ok := members["checkpoint/"]; ok {
		t.Errorf("a files-only checkpoint has CRIU images")
	}
	diff := tarMembers(t, bytes.NewReader(members["rootfs-diff.tar"]))
	if string(diff["data/sub/f"]) != "hello\n" || !strings.Contains(string(diff["etc/passwd"]), "extra:x:9:9") {
		t.Errorf("rootfs-diff.tar: data/sub/f %q, etc/passwd %q", diff["data/sub/f"], diff["etc/passwd"])
	}
	for name := range diff {
		if strings.HasPrefix(name, "mnt/host/") || name == "etc/hosts" || name == "etc/resolv.conf" {
			t.Errorf("rootfs-diff.tar has %s, which is a mount, not the container's", name)
		}
	}

	// Restore into a new pod. The containers' configurations are the
	// checkpointed ones, with restore-time settings of the new pod.
	newPodCfg := podConfig("ckpt-restored")
	newPodCfg.LogDirectory = t.TempDir()
	newHost := t.TempDir()
	app.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt/host", HostPath: newHost}}
	restoreReq := func(mod func(*runtimeapi.RestorePodRequest)) *runtimeapi.RestorePodRequest {
		r := &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: newPodCfg, ContainerConfigs: []*runtimeapi.ContainerConfig{app, side},
			Options: map[string]string{"process-state": "omit"}}
		if mod != nil {
			mod(r)
		}
		return r
	}
	changedArgs := containerConfig("side", "echo other && exec sleep 3600")
	for _, tc := range []struct {
		name string
		mod  func(*runtimeapi.RestorePodRequest)
		code codes.Code
		msg  string
	}{
		{"processes from files only", func(r *runtimeapi.RestorePodRequest) { r.Options = nil }, codes.FailedPrecondition,
			"the checkpoint has the containers' files but not their processes (it was taken with process-state=omit)"},
		{"not the checkpoint's containers", func(r *runtimeapi.RestorePodRequest) { r.ContainerConfigs = []*runtimeapi.ContainerConfig{app} }, codes.InvalidArgument,
			`the containers ["app"] are not the checkpoint's ["app" "side"]`},
		{"another process", func(r *runtimeapi.RestorePodRequest) {
			r.ContainerConfigs = []*runtimeapi.ContainerConfig{app, changedArgs}
		}, codes.FailedPrecondition,
			"container_configs[1]: the container's command and arguments"},
		{"no checkpoint", func(r *runtimeapi.RestorePodRequest) { r.CheckpointPath = t.TempDir() }, codes.InvalidArgument, "is not a pod checkpoint Berth wrote"},
	} {
		t.Run("restore "+tc.name, func(t *testing.T) {
			_, err := berth.RuntimeClient.RestorePod(ctx, restoreReq(tc.mod))
			wantCode(t, err, tc.code, tc.msg)
			if out, _ := docker(t, "ps", "-a", "-q", "--filter", "name=_ckpt-restored_"); out != "" {
				t.Errorf("a refused restore left containers: %s", out)
			}
		})
	}

	res, err := berth.RuntimeClient.RestorePod(ctx, restoreReq(nil))
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	t.Cleanup(func() { removePod(t, berth, res.GetPodSandboxId()) })
	if st := podStatus(t, berth, res.GetPodSandboxId()); st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Metadata.GetUid() != newPodCfg.Metadata.Uid {
		t.Errorf("restored pod: %v %v", st.State, st.Metadata)
	}
	restored := map[string]string{}
	for _, rc := range res.GetRestoredContainers() {
		restored[rc.GetName()] = rc.GetContainerId()
	}
	if len(restored) != 2 || restored["app"] == "" || restored["side"] == "" {
		t.Fatalf("restored containers = %v", res.GetRestoredContainers())
	}
	for name, id := range restored {
		if st := containerStatus(t, berth, id); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Errorf("restored %s is %v, want CREATED", name, st.State)
		}
		if err := berth.Runtime.StartContainer(ctx, id); err != nil {
			t.Fatalf("StartContainer(%s): %v", name, err)
		}
	}
	got := dockerExec(t, restored["app"], "sh", "-c", "cat /data/sub/f; grep -c ^extra: /etc/passwd; test -e /etc/group && echo group-is-back; ls /mnt/host")
	if got != "hello\n1" {
		t.Errorf("the restored app's files: %q, want the checkpointed ones, /etc/group deleted, the new pod's empty host directory", got)
	}
	if got := dockerExec(t, restored["side"], "cat", "/side"); got != "side" {
		t.Errorf("the restored side's file: %q", got)
	}
	if _, err := os.Stat(filepath.Join(newHost, "h")); err == nil {
		t.Errorf("the restore wrote into a bind mount's host directory")
	}
}
