package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

func TestListImagesAndImageStatus(t *testing.T) {
	ctx := context.Background()
	repoA := framework.UniqueName("berth-e2e/list-a")
	repoB := framework.UniqueName("berth-e2e/list-b")
	sandbox := framework.UniqueName("berth-e2e/sandbox") + ":1"
	idA := framework.BuildImage(t, "", repoA+":v1", framework.ImageOptions{User: "1234:1234"})
	framework.TagImage(t, "", idA, repoA+":v2")
	idB := framework.BuildImage(t, "", repoB+":v1", framework.ImageOptions{User: "app", Size: 64 << 10})
	idS := framework.BuildImage(t, "", sandbox, framework.ImageOptions{})
	b := framework.StartBerth(t, framework.Options{Args: []string{
		"--pod-infra-container-image", sandbox,
		"--pinned-images", repoB + ":v1,docker.io/library/" + repoA + ":nope",
	}})

	all, err := b.Images.ListImages(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*runtimeapi.Image{}
	for _, img := range all {
		if byID[img.Id] != nil {
			t.Errorf("image %s listed twice", img.Id)
		}
		byID[img.Id] = img
	}
	a, bb, s := byID[idA], byID[idB], byID[idS]
	if a == nil || bb == nil || s == nil {
		t.Fatalf("ListImages lacks the test images %s %s %s", idA, idB, idS)
	}
	if !contains(a.RepoTags, repoA+":v1") || !contains(a.RepoTags, repoA+":v2") || len(a.RepoTags) != 2 {
		t.Errorf("image A tags %v", a.RepoTags)
	}
	if a.GetUid().GetValue() != 1234 || a.Username != "" || bb.Uid != nil || bb.Username != "app" {
		t.Errorf("users: A %v/%q, B %v/%q; want uid 1234 and user app", a.Uid, a.Username, bb.Uid, bb.Username)
	}
	if a.Pinned || !bb.Pinned || !s.Pinned {
		t.Errorf("pinned: A %v, B %v, sandbox %v; want B (--pinned-images) and the sandbox image", a.Pinned, bb.Pinned, s.Pinned)
	}
	if bb.Size < 64<<10 || bb.Size != uint64(dockerImageSize(t, idB)) {
		t.Errorf("B size %d, Docker says %d", bb.Size, dockerImageSize(t, idB))
	}
	// ListImages and ImageStatus tell the same story.
	for _, img := range []*runtimeapi.Image{a, bb, s} {
		st := imageStatus(t, b, img.Id, false).GetImage()
		if st == nil || st.Id != img.Id || st.Pinned != img.Pinned || st.Size != img.Size ||
			st.GetUid().GetValue() != img.GetUid().GetValue() || st.Username != img.Username || len(st.RepoTags) != len(img.RepoTags) {
			t.Errorf("ImageStatus %v\n ListImages %v", st, img)
		}
	}

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{repoA, []string{idA}}, // a bare name: every tag of it
		{repoA + ":v2", []string{idA}},
		{"docker.io/" + repoB + ":v1", []string{idB}},
		{repoB + ":v2", nil},
		{idB, []string{idB}},
		{strings.TrimPrefix(idS, "sha256:")[:16], []string{idS}},
	} {
		list, err := b.Images.ListImages(ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: tc.filter}})
		if err != nil {
			t.Fatalf("ListImages(%s): %v", tc.filter, err)
		}
		var got []string
		for _, img := range list {
			got = append(got, img.Id)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ListImages(%s) = %v, want %v", tc.filter, got, tc.want)
		}
	}
	_, err = b.ImageClient.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "Bad Ref"}}})
	wantCode(t, err, codes.InvalidArgument, "filter.image.image")

	// StreamImages returns what ListImages does.
	stream, err := b.ImageClient.StreamImages(ctx, &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	streamed := map[string]bool{}
	for _, resp := range recvAll(t, stream.Recv) {
		if len(resp.Images) == 0 {
			t.Errorf("StreamImages sent an empty batch")
		}
		for _, img := range resp.Images {
			if streamed[img.Id] {
				t.Errorf("StreamImages sent %s twice", img.Id)
			}
			streamed[img.Id] = true
		}
	}
	for _, id := range []string{idA, idB, idS} {
		if !streamed[id] {
			t.Errorf("StreamImages lacks %s", id)
		}
	}

	// Absent images: no image, no error.
	for _, ref := range []string{repoA + ":v3", "sha256:" + strings.Repeat("f", 64), framework.UniqueName("berth-e2e/none")} {
		if st := imageStatus(t, b, ref, false); st.Image != nil || len(st.Info) != 0 {
			t.Errorf("ImageStatus(%s) = %v for an absent image", ref, st)
		}
	}
	_, err = b.ImageClient.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{}})
	wantCode(t, err, codes.InvalidArgument, "image.image")
}

func TestImageStatusVerbose(t *testing.T) {
	ref := framework.UniqueName("berth-e2e/verbose") + ":v1"
	id := framework.BuildImage(t, "", ref, framework.ImageOptions{User: "app"})
	st := imageStatus(t, berth, ref, true)
	if st.GetImage().GetId() != id {
		t.Fatalf("ImageStatus = %v", st)
	}
	var info struct {
		ID     string `json:"id"`
		Config struct {
			Cmd  []string `json:"Cmd"`
			User string   `json:"User"`
		} `json:"config"`
		RootFS struct {
			Layers []string `json:"Layers"`
		} `json:"rootfs"`
		History []struct {
			CreatedBy string `json:"CreatedBy"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info is not JSON: %v\n%s", err, st.Info["info"])
	}
	if info.ID != id || info.Config.User != "app" || len(info.Config.Cmd) == 0 || len(info.RootFS.Layers) != 1 || len(info.History) == 0 {
		t.Errorf("verbose info = %s", st.Info["info"])
	}
	if plain := imageStatus(t, berth, ref, false); len(plain.Info) != 0 {
		t.Errorf("non-verbose ImageStatus has info %v", plain.Info)
	}
}

func TestRemoveImage(t *testing.T) {
	ctx := context.Background()
	t.Run("by tag removes every tag", func(t *testing.T) {
		repo := framework.UniqueName("berth-e2e/rm")
		id := framework.BuildImage(t, "", repo+":v1", framework.ImageOptions{})
		other := framework.UniqueName("berth-e2e/rm-other") + ":latest"
		framework.TagImage(t, "", id, repo+":v2")
		framework.TagImage(t, "", id, other)
		removeImage(t, berth, repo+":v1")
		for _, ref := range []string{repo + ":v1", repo + ":v2", other, id} {
			if framework.ImageExists(t, "", ref) {
				t.Errorf("%s still exists", ref)
			}
		}
		if list, _ := berth.Images.ListImages(ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: id}}); len(list) != 0 {
			t.Errorf("ListImages still has %v", list)
		}
		// Absent is success, by any reference.
		removeImage(t, berth, repo+":v1")
		removeImage(t, berth, id)
	})
	t.Run("by id and by digest", func(t *testing.T) {
		reg := framework.StartRegistry(t, framework.RegistryOptions{})
		img := pushImage(t, reg.Addr, framework.ImageOptions{})
		id := mustPull(t, berth, img.Ref, nil)
		removeImage(t, berth, img.Repo+"@"+img.Digest)
		if framework.ImageExists(t, "", id) {
			t.Errorf("image %s survived removal by digest", id)
		}
		id = mustPull(t, berth, img.Ref, nil)
		removeImage(t, berth, id)
		if framework.ImageExists(t, "", img.Ref) {
			t.Errorf("image %s survived removal by id", id)
		}
	})
	t.Run("in use by a container", func(t *testing.T) {
		ref := framework.UniqueName("berth-e2e/inuse") + ":v1"
		id := framework.BuildImage(t, "", ref, framework.ImageOptions{})
		name := createContainer(t, "", ref)
		_, err := berth.ImageClient.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		wantCode(t, err, codes.FailedPrecondition, name)
		wantCode(t, err, codes.FailedPrecondition, "in use")
		if !framework.ImageExists(t, "", ref) {
			t.Fatalf("the image (or its tag) was removed although a container uses it")
		}
		removeContainer(t, "", name)
		removeImage(t, berth, ref)
		if framework.ImageExists(t, "", id) {
			t.Errorf("image %s still exists once its container is gone", id)
		}
	})
	t.Run("concurrent removals all succeed", func(t *testing.T) {
		repo := framework.UniqueName("berth-e2e/rm-concurrent")
		id := framework.BuildImage(t, "", repo+":v1", framework.ImageOptions{})
		framework.TagImage(t, "", id, repo+":v2")
		refs := []string{repo + ":v1", repo + ":v2", id, repo + ":v1", id, repo + ":v2"}
		var wg sync.WaitGroup
		errs := make([]error, len(refs))
		for i, ref := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = berth.ImageClient.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("RemoveImage(%s): %v", refs[i], err)
			}
		}
		if framework.ImageExists(t, "", id) {
			t.Errorf("image %s survived", id)
		}
	})
	t.Run("invalid reference", func(t *testing.T) {
		_, err := berth.ImageClient.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "Bad Ref"}})
		wantCode(t, err, codes.InvalidArgument, "image.image")
	})
}

func TestImageFsInfo(t *testing.T) {
	ctx := context.Background()
	// A private daemon: only this test's containers are in it, so the
	// writable layers' figure can be checked exactly.
	d := framework.StartDockerd(t, "")
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", d.Host}})
	dc, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	info, err := dc.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Where this daemon keeps image and container layers: with the
	// classic store the storage driver's directory under its root; with
	// the containerd image store containerd's snapshotter directory, under
	// <root>/containerd/daemon since the private daemon runs a containerd
	// of its own (its socket is under the daemon's directory).
	containerdStore := framework.ContainerdImageStore(t, d.Host)
	storage := filepath.Join(info.Info.DockerRootDir, info.Info.Driver)
	if containerdStore {
		if info.Info.Containerd == nil || !strings.HasPrefix(info.Info.Containerd.Address, d.Dir+"/") {
			t.Fatalf("the private daemon's containerd is %+v, want its own under %s", info.Info.Containerd, d.Dir)
		}
		storage = filepath.Join(info.Info.DockerRootDir, "containerd", "daemon", "io.containerd.snapshotter.v1."+info.Info.Driver)
	}
	if st, err := os.Stat(storage); err != nil || !st.IsDir() {
		t.Fatalf("the daemon's layer storage %s: %v (docker info: driver %s, driver status %v)", storage, err, info.Info.Driver, info.Info.DriverStatus)
	}

	// df right before and right after the call brackets what Berth may
	// report, whatever else writes to the disk meanwhile. Something else
	// may also free space within the bracket: a few tries rule that out.
	const slackBytes, slackInodes = 16 << 20, 1000
	var resp *runtimeapi.ImageFsInfoResponse
	var df dfFigures
	var mismatch string
	for attempt := 0; attempt < 5; attempt++ {
		before := dfOf(t, storage)
		resp, err = b.ImageClient.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		df = dfOf(t, storage)
		if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 1 {
			t.Fatalf("ImageFsInfo = %v, want one image and one container filesystem", resp)
		}
		used, iused := resp.ImageFilesystems[0].UsedBytes.GetValue(), resp.ImageFilesystems[0].InodesUsed.GetValue()
		mismatch = ""
		if used+slackBytes < min(before.used, df.used) || used > max(before.used, df.used)+slackBytes {
			mismatch = fmt.Sprintf("image filesystem used %d bytes, df says %d then %d", used, before.used, df.used)
		}
		if iused+slackInodes < min(before.iused, df.iused) || iused > max(before.iused, df.iused)+slackInodes {
			mismatch += fmt.Sprintf("; image filesystem used %d inodes, df says %d then %d", iused, before.iused, df.iused)
		}
		if mismatch == "" {
			break
		}
	}
	if mismatch != "" {
		t.Error(mismatch)
	}
	imageFs := resp.ImageFilesystems[0]
	if imageFs.FsId.GetMountpoint() != df.mount {
		t.Errorf("image filesystem %q, df says %q", imageFs.FsId.GetMountpoint(), df.mount)
	}
	if resp.ContainerFilesystems[0].FsId.GetMountpoint() != df.mount || imageFs.Timestamp <= 0 {
		t.Errorf("container filesystem %v", resp.ContainerFilesystems[0])
	}
	empty := resp.ContainerFilesystems[0].UsedBytes.GetValue()

	// A container with 3 MiB in its writable layer (and a few files).
	ref := framework.UniqueName("berth-e2e/fs") + ":v1"
	framework.BuildImage(t, d.Host, ref, framework.ImageOptions{})
	name := createContainer(t, d.Host, ref)
	payload := uint64(copyIntoContainer(t, d.Host, name, 3<<20, 10))

	var cfs *runtimeapi.FilesystemUsage
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := b.ImageClient.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		cfs = resp.ContainerFilesystems[0]
		if cfs.UsedBytes.GetValue() >= empty+payload {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's writable layer never showed: %v", cfs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// What `docker system df` reports for containers: the sum of SizeRw.
	list, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Size: true})
	if err != nil {
		t.Fatal(err)
	}
	var sizeRw int64
	for _, c := range list.Items {
		sizeRw += c.SizeRw
	}
	if absDiff(cfs.UsedBytes.GetValue(), uint64(sizeRw)) > 64<<10 {
		t.Errorf("writable layers: Berth %d bytes, Docker %d", cfs.UsedBytes.GetValue(), sizeRw)
	}
	switch {
	case containerdStore:
		// Docker does not say where a writable layer is under the
		// containerd store: it measures the layer, bytes only.
		if cfs.InodesUsed != nil {
			t.Errorf("writable layers: %d inodes reported under the containerd image store, where Berth cannot count them", cfs.InodesUsed.GetValue())
		}
	case cfs.InodesUsed.GetValue() < 10:
		t.Errorf("writable layers: %d inodes, want at least the 10 files written", cfs.InodesUsed.GetValue())
	}
}

type dfFigures struct {
	mount       string
	used, iused uint64
}

func dfOf(t *testing.T, path string) dfFigures {
	t.Helper()
	out, err := exec.Command("df", "-B1", "--output=target,used,iused", path).Output()
	if err != nil {
		t.Fatalf("df %s: %v", path, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		t.Fatalf("df output %q", out)
	}
	n := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("df output %q: %v", out, err)
		}
		return v
	}
	return dfFigures{mount: f[0], used: n(f[1]), iused: n(f[2])}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// createContainer creates (without starting) a container of image in the
// Docker at host; it is removed when the test ends.
func createContainer(t *testing.T, host, image string) string {
	t.Helper()
	dc := dockerClient(t, host)
	name := framework.UniqueName("berth-e2e-ctr")
	_, err := dc.ContainerCreate(context.Background(), client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: image},
	})
	if err != nil {
		t.Fatalf("creating a container of %s: %v", image, err)
	}
	t.Cleanup(func() { removeContainer(t, host, name) })
	return name
}

func removeContainer(t *testing.T, host, name string) {
	t.Helper()
	dc := dockerClient(t, host)
	_, err := dc.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
	if err != nil && !strings.Contains(err.Error(), "No such container") {
		t.Errorf("removing container %s: %v", name, err)
	}
}

// copyIntoContainer writes files random files of size/files bytes into the
// container's writable layer, and returns how many bytes it wrote.
func copyIntoContainer(t *testing.T, host, name string, size, files int) int {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range files {
		data := make([]byte, size/files)
		_, _ = rand.Read(data)
		if err := tw.WriteHeader(&tar.Header{Name: "file" + strconv.Itoa(i), Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dc := dockerClient(t, host)
	if _, err := dc.CopyToContainer(context.Background(), name, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatalf("copying into %s: %v", name, err)
	}
	return size / files * files
}

func dockerClient(t *testing.T, host string) *client.Client {
	t.Helper()
	if host == "" {
		host = framework.DockerHost()
	}
	dc, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	return dc
}

func dockerImageSize(t *testing.T, ref string) int64 {
	t.Helper()
	img, err := dockerClient(t, "").ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.Size
}
