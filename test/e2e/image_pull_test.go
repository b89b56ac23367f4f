package e2e

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// pushedImage is an image a test built, pushed to a registry and removed
// from Docker, so that pulling it is a real pull.
type pushedImage struct {
	Repo   string // registry/repository
	Ref    string // Repo:tag
	Digest string // manifest digest the registry stored
}

// pushImage builds a distinct image as <reg>/berth-e2e/<unique>:v1, pushes
// it to reg and removes it from Docker. Images pulled back are removed when
// the test ends.
func pushImage(t *testing.T, reg string, opts framework.ImageOptions) pushedImage {
	t.Helper()
	repo := reg + "/" + framework.UniqueName("berth-e2e/img")
	img := pushedImage{Repo: repo, Ref: repo + ":v1"}
	id := framework.BuildImage(t, "", img.Ref, opts)
	img.Digest = framework.PushImage(t, "", img.Ref)
	framework.RemoveImage(t, "", id)
	if framework.ImageExists(t, "", img.Ref) {
		t.Fatalf("%s still in Docker after removing it", img.Ref)
	}
	return img
}

// pull pulls through the raw gRPC client, so the status code is Berth's.
func pull(ctx context.Context, b *framework.Berth, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	resp, err := b.ImageClient.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	if err != nil {
		return "", err
	}
	return resp.ImageRef, nil
}

func mustPull(t *testing.T, b *framework.Berth, ref string, auth *runtimeapi.AuthConfig) string {
	t.Helper()
	id, err := pull(context.Background(), b, ref, auth)
	if err != nil {
		t.Fatalf("PullImage(%s): %v", ref, err)
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("PullImage(%s) = %q, want an image id", ref, id)
	}
	return id
}

func imageStatus(t *testing.T, b *framework.Berth, ref string, verbose bool) *runtimeapi.ImageStatusResponse {
	t.Helper()
	resp, err := b.ImageClient.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose})
	if err != nil {
		t.Fatalf("ImageStatus(%s): %v", ref, err)
	}
	return resp
}

func removeImage(t *testing.T, b *framework.Berth, ref string) {
	t.Helper()
	if _, err := b.ImageClient.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("RemoveImage(%s): %v", ref, err)
	}
}

func TestPullImageByTagAndByDigest(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := pushImage(t, reg.Addr, framework.ImageOptions{User: "1234:1234"})

	id := mustPull(t, berth, img.Ref, nil)
	st := imageStatus(t, berth, img.Ref, false).GetImage()
	if st == nil || st.Id != id {
		t.Fatalf("ImageStatus(%s) = %v, want id %s", img.Ref, st, id)
	}
	wantDigest := img.Repo + "@" + img.Digest
	if !contains(st.RepoTags, img.Ref) || !contains(st.RepoDigests, wantDigest) {
		t.Errorf("tags %v, digests %v; want %s and %s", st.RepoTags, st.RepoDigests, img.Ref, wantDigest)
	}
	if st.GetUid().GetValue() != 1234 || st.Username != "" || st.Size == 0 {
		t.Errorf("ImageStatus = %v, want uid 1234 and a size", st)
	}
	// Docker's own id for it is the one Berth reports.
	if want := dockerImageID(t, img.Ref); want != id {
		t.Errorf("PullImage = %s, Docker's id is %s", id, want)
	}

	removeImage(t, berth, id)
	byDigest := mustPull(t, berth, wantDigest, nil)
	if byDigest != id {
		t.Errorf("pull by digest = %s, by tag = %s: one image, two ids", byDigest, id)
	}
	st = imageStatus(t, berth, wantDigest, false).GetImage()
	if st == nil || st.Id != id || !contains(st.RepoDigests, wantDigest) {
		t.Errorf("ImageStatus by digest = %v", st)
	}
	// A reference with a tag and a digest is pulled by its digest.
	if got := mustPull(t, berth, img.Ref+"@"+img.Digest, nil); got != id {
		t.Errorf("pull by tag@digest = %s, want %s", got, id)
	}
}

func TestImageIdentityAcrossReferences(t *testing.T) {
	reg1 := framework.StartRegistry(t, framework.RegistryOptions{})
	reg2 := framework.StartRegistry(t, framework.RegistryOptions{})
	// One image, pushed to two registries as :latest.
	name := framework.UniqueName("berth-e2e/same")
	ref1, ref2 := reg1.Addr+"/"+name+":latest", reg2.Addr+"/"+name+":latest"
	local := framework.BuildImage(t, "", ref1, framework.ImageOptions{})
	framework.TagImage(t, "", ref1, ref2)
	framework.PushImage(t, "", ref1)
	digest := framework.PushImage(t, "", ref2)
	framework.RemoveImage(t, "", local)

	ids := map[string]string{}
	for _, ref := range []string{
		reg1.Addr + "/" + name,                // bare name: latest
		ref1,                                  // by tag
		reg2.Addr + "/" + name + "@" + digest, // another registry, by digest
	} {
		ids[ref] = mustPull(t, berth, ref, nil)
	}
	id := ids[ref1]
	for ref, got := range ids {
		if got != id {
			t.Errorf("PullImage(%s) = %s, PullImage(%s) = %s: one image, two ids", ref, got, ref1, id)
		}
	}
	// A name in Docker Hub's namespace, in all its spellings.
	hub := framework.UniqueName("berth-e2e-hub") + ":v1"
	framework.TagImage(t, "", id, hub)

	byDigest2 := reg2.Addr + "/" + name + "@" + digest
	for _, ref := range []string{
		reg1.Addr + "/" + name, ref1, byDigest2,
		id, strings.TrimPrefix(id, "sha256:"),
		hub, "library/" + hub, "docker.io/library/" + hub,
	} {
		st := imageStatus(t, berth, ref, false).GetImage()
		if st == nil || st.Id != id {
			t.Errorf("ImageStatus(%s) = %v, want id %s", ref, st, id)
		}
	}
	list, err := berth.Images.ListImages(context.Background(), &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Id != id {
		t.Fatalf("ListImages(id) = %v, want the one image", list)
	}
	for _, tag := range []string{ref1, hub} {
		if !contains(list[0].RepoTags, tag) {
			t.Errorf("ListImages tags %v lack %s", list[0].RepoTags, tag)
		}
	}
	// Pulled from reg2 by digest only: reg2's digest, but no reg2 tag.
	if !contains(list[0].RepoDigests, byDigest2) || contains(list[0].RepoTags, ref2) {
		t.Errorf("ListImages = %v, want digest %s and no tag %s", list[0], byDigest2, ref2)
	}
	if st := imageStatus(t, berth, ref2, false); st.Image != nil {
		t.Errorf("ImageStatus(%s) = %v for a tag never pulled", ref2, st.Image)
	}
	if want := dockerImageID(t, byDigest2); want != id {
		t.Errorf("Docker's id %s differs from Berth's %s", want, id)
	}
	sameNames(t, imageStatus(t, berth, id, false).GetImage(), list[0])
	// ContainerStatus.image_id is checked by the container tests; it uses
	// the same dockerspec.ImageID.
}

// sameNames checks that ImageStatus and ListImages report one image with the
// same tags and repo digests (Docker's inspect and list differ under the
// containerd image store).
func sameNames(t *testing.T, status, listed *runtimeapi.Image) {
	t.Helper()
	if status == nil || listed == nil {
		t.Fatalf("ImageStatus %v, ListImages %v", status, listed)
	}
	sorted := func(s []string) string { return strings.Join(slices.Sorted(slices.Values(s)), " ") }
	if status.Id != listed.Id || sorted(status.RepoTags) != sorted(listed.RepoTags) || sorted(status.RepoDigests) != sorted(listed.RepoDigests) {
		t.Errorf("ImageStatus and ListImages disagree:\n ImageStatus %v\n ListImages  %v", status, listed)
	}
}

// An image pulled through an index (a multi-platform image) has one id
// across PullImage, ImageStatus, ListImages and ContainerStatus, by tag and
// by digest: the index digest under the containerd image store, the config
// digest under the classic store.
func TestImageIdentityOfAnIndex(t *testing.T) {
	ctx := context.Background()
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := pushImage(t, reg.Addr, framework.ImageOptions{})
	index := reg.PushIndex(t, strings.TrimPrefix(img.Repo, reg.Addr+"/"), "multi", img.Digest)
	multi, byIndex := img.Repo+":multi", img.Repo+"@"+index
	t.Cleanup(func() { framework.RemoveImage(t, "", multi); framework.RemoveImage(t, "", byIndex) })

	id := mustPull(t, berth, multi, nil)
	if want := dockerImageID(t, multi); id != want {
		t.Errorf("PullImage(%s) = %s, Docker's id is %s", multi, id, want)
	}
	if got := mustPull(t, berth, byIndex, nil); got != id {
		t.Errorf("PullImage(%s) = %s, by tag %s: one image, two ids", byIndex, got, id)
	}
	manifestID := mustPull(t, berth, img.Ref, nil)
	if framework.ContainerdImageStore(t, "") {
		// An image is what its name points at: the index, or the manifest.
		if id != index || manifestID != img.Digest {
			t.Errorf("ids: through the index %s, of the manifest %s; want the digests %s and %s", id, manifestID, index, img.Digest)
		}
	} else if id != manifestID || id == index {
		// An image is its config, however it was reached.
		t.Errorf("ids: through the index %s, of the manifest %s; want one id, the config's", id, manifestID)
	}

	st := imageStatus(t, berth, byIndex, false).GetImage()
	if st == nil || st.Id != id || !contains(st.RepoTags, multi) || !contains(st.RepoDigests, byIndex) {
		t.Fatalf("ImageStatus(%s) = %v, want id %s, tag %s, digest %s", byIndex, st, id, multi, byIndex)
	}
	list, err := berth.Images.ListImages(ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: byIndex}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("ListImages(%s) = %v, want one image", byIndex, list)
	}
	sameNames(t, st, list[0])

	p := newPod(t, berth, "img-index")
	cfg := containerConfig("from-index", "true")
	cfg.Image = &runtimeapi.ImageSpec{Image: multi}
	cst := containerStatus(t, berth, p.create(t, cfg))
	if cst.ImageId != id || cst.ImageRef != id {
		t.Errorf("ContainerStatus: image_id %q, image_ref %q; want %s", cst.ImageId, cst.ImageRef, id)
	}
}

func TestPullImageCredentials(t *testing.T) {
	users := map[string]string{"alice": "wonderland"}
	open := framework.StartRegistry(t, framework.RegistryOptions{})
	basic := framework.StartRegistry(t, framework.RegistryOptions{Dir: open.Dir, Users: users})
	tokens := framework.StartTokenServer(t, users)
	token := framework.StartRegistry(t, framework.RegistryOptions{Dir: open.Dir, Token: tokens})
	img := pushImage(t, open.Addr, framework.ImageOptions{})
	path := strings.TrimPrefix(img.Repo, open.Addr+"/")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	// A token registry answers a token that does not grant the repository
	// with 401. Docker's classic store retries without it and reports the
	// registry's "denied", which it also says for a repository that does
	// not exist; the containerd image store reports the 401.
	otherRepoCode, otherRepoMsg := codes.NotFound, "access to it denied"
	if framework.ContainerdImageStore(t, "") {
		otherRepoCode, otherRepoMsg = codes.Unauthenticated, "authentication to registry "+token.Addr+" failed"
	}

	for _, tc := range []struct {
		name string
		reg  *framework.Registry
		auth *runtimeapi.AuthConfig
		code codes.Code
		msg  string
	}{
		{"basic/username and password", basic, &runtimeapi.AuthConfig{Username: "alice", Password: "wonderland"}, codes.OK, ""},
		{"basic/auth field", basic, &runtimeapi.AuthConfig{Auth: b64("alice:wonderland")}, codes.OK, ""},
		{"basic/with server address", basic, &runtimeapi.AuthConfig{Username: "alice", Password: "wonderland", ServerAddress: basic.Addr}, codes.OK, ""},
		{"basic/wrong password", basic, &runtimeapi.AuthConfig{Username: "alice", Password: "nope"}, codes.Unauthenticated, "authentication to registry " + basic.Addr + " failed"},
		{"basic/wrong auth field", basic, &runtimeapi.AuthConfig{Auth: b64("alice:nope")}, codes.Unauthenticated, "authentication"},
		{"basic/no credentials", basic, nil, codes.Unauthenticated, "authentication"},
		{"basic/auth field not base64", basic, &runtimeapi.AuthConfig{Auth: "!!"}, codes.InvalidArgument, "auth.auth"},
		{"token/username and password", token, &runtimeapi.AuthConfig{Username: "alice", Password: "wonderland"}, codes.OK, ""},
		{"token/auth field", token, &runtimeapi.AuthConfig{Auth: b64("alice:wonderland"), ServerAddress: token.Addr}, codes.OK, ""},
		{"token/identity token", token, &runtimeapi.AuthConfig{Username: "alice", IdentityToken: tokens.IdentityToken("alice"), ServerAddress: token.Addr}, codes.OK, ""},
		{"token/registry token", token, &runtimeapi.AuthConfig{RegistryToken: tokens.AccessToken("alice", path)}, codes.OK, ""},
		{"token/wrong password", token, &runtimeapi.AuthConfig{Username: "alice", Password: "nope"}, codes.Unauthenticated, "authentication to registry " + token.Addr + " failed"},
		{"token/unknown identity token", token, &runtimeapi.AuthConfig{Username: "alice", IdentityToken: "idt-forged"}, codes.Unauthenticated, "authentication"},
		{"token/registry token for another repository", token, &runtimeapi.AuthConfig{RegistryToken: tokens.AccessToken("alice", "other/repo")}, otherRepoCode, otherRepoMsg},
		{"token/no credentials", token, nil, codes.NotFound, "access to it denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.reg.Addr + "/" + path + ":v1"
			id, err := pull(context.Background(), berth, ref, tc.auth)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("PullImage(%s): %v", ref, err)
				}
				if st := imageStatus(t, berth, ref, false).GetImage(); st == nil || st.Id != id {
					t.Errorf("ImageStatus after pull = %v, want %s", st, id)
				}
				removeImage(t, berth, id)
				if tc.auth.GetIdentityToken() != "" && tokens.RefreshGrants() == 0 {
					t.Errorf("Docker did not exchange the identity token for a registry token")
				}
				return
			}
			wantCode(t, err, tc.code, tc.msg)
			if framework.ImageExists(t, "", ref) {
				t.Errorf("%s is in Docker after a failed pull", ref)
			}
		})
	}
}

func TestPullImageUnknownImage(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := pushImage(t, reg.Addr, framework.ImageOptions{})
	for _, ref := range []string{
		reg.Addr + "/berth-e2e/no-such-image:v1",
		img.Repo + ":no-such-tag",
		img.Repo + "@sha256:" + strings.Repeat("0", 64),
	} {
		_, err := pull(context.Background(), berth, ref, nil)
		wantCode(t, err, codes.NotFound, "not found")
		wantCode(t, err, codes.NotFound, strings.Split(ref, "@")[0])
	}
}

func TestPullImageUnreachableRegistry(t *testing.T) {
	// A loopback port nobody listens on.
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	addr := reg.Addr
	reg.Stop()
	_, err := pull(context.Background(), berth, addr+"/berth-e2e/app:v1", nil)
	wantCode(t, err, codes.Unavailable, "registry "+addr+" is unreachable")
	wantCode(t, err, codes.Unavailable, "RegistryUnavailable")
}

func TestPullImageRejectsBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   *runtimeapi.PullImageRequest
		field string
	}{
		{"no image", &runtimeapi.PullImageRequest{}, "image.image"},
		{"invalid reference", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "Not A Ref"}}, "image.image"},
		{"an image id", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("a", 64)}}, "image id"},
		{"unknown runtime handler", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox", RuntimeHandler: "no-such-runtime"}}, "image.runtime_handler"},
		{"bad auth field", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, Auth: &runtimeapi.AuthConfig{Auth: "%%"}}, "auth.auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := berth.ImageClient.PullImage(context.Background(), tc.req)
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}
}

func TestConcurrentIdenticalPullsShareOneDockerPull(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	proxy := framework.StartThrottleProxy(t, reg.Addr)
	docker := framework.StartDockerProxy(t)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--docker-endpoint", docker.Host}})
	img := pushImage(t, reg.Addr, framework.ImageOptions{Size: 256 << 10})
	ref := proxy.Addr + "/" + strings.TrimPrefix(img.Ref, reg.Addr+"/")
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })

	// Hold the layer download until every caller is in, so they overlap.
	proxy.Hold()
	const n = 5
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = pull(context.Background(), b, ref, nil)
		}()
	}
	joined := "joined an identical pull in flight"
	deadline := time.Now().Add(time.Minute)
	for strings.Count(b.Log(), joined) < n-1 {
		if time.Now().After(deadline) {
			proxy.Release()
			t.Fatalf("only %d of %d callers joined the pull in flight", strings.Count(b.Log(), joined), n-1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	proxy.Release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("caller %d: %q, %v; caller 0: %q", i, ids[i], errs[i], ids[0])
		}
	}
	creates := docker.Requests(func(r framework.DockerRequest) bool {
		return r.Method == "POST" && r.Path == "/images/create" && strings.HasPrefix(r.Query.Get("fromImage"), proxy.Addr+"/")
	})
	if len(creates) != 1 {
		t.Errorf("Docker was asked to pull %d times, want once: %v", len(creates), creates)
	}
	// Different credentials are a different pull.
	if _, err := pull(context.Background(), b, ref, &runtimeapi.AuthConfig{Username: "someone", Password: "x"}); err != nil {
		t.Errorf("pull with credentials from an open registry: %v", err)
	}
}

func TestSlowPullThatKeepsProgressingOutlivesTheDeadline(t *testing.T) {
	// NOTE: the containerd image store reports a layer's download in steps
	// of 1 MiB (what containerd has written), so the rate must bring each
	// MiB well within the deadline: here every half second, a quarter of
	// the deadline. Docker's classic store reports every few KiB.
	const (
		deadline = 2 * time.Second
		rate     = 2 << 20  // bytes per second
		size     = 12 << 20 // ≥ 6 s of download at that rate: three deadlines
	)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	proxy := framework.StartThrottleProxy(t, reg.Addr)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--image-pull-progress-deadline", deadline.String()}})
	img := pushImage(t, reg.Addr, framework.ImageOptions{Size: size})
	ref := proxy.Addr + "/" + strings.TrimPrefix(img.Ref, reg.Addr+"/")
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })

	proxy.SetRate(rate)
	id := mustPull(t, b, ref, nil)
	// Every byte of the layer went through the throttle: the download
	// lasted at least size/rate, several times the deadline.
	if got := proxy.BlobBytes(); got < size {
		t.Errorf("only %d bytes went through the throttle, want ≥ %d", got, size)
	}
	if st := imageStatus(t, b, ref, false).GetImage(); st == nil || st.Id != id {
		t.Errorf("ImageStatus after the slow pull = %v", st)
	}
}

func TestStalledPullIsCancelled(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	proxy := framework.StartThrottleProxy(t, reg.Addr)
	b := framework.StartBerth(t, framework.Options{Args: []string{"--image-pull-progress-deadline", "2s"}})
	img := pushImage(t, reg.Addr, framework.ImageOptions{Size: 2 << 20})
	ref := proxy.Addr + "/" + strings.TrimPrefix(img.Ref, reg.Addr+"/")
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })

	proxy.StallAfter(256 << 10)
	_, err := pull(context.Background(), b, ref, nil)
	wantCode(t, err, codes.DeadlineExceeded, "no progress for 2s")
	if proxy.Stalls() == 0 {
		t.Fatalf("the pull failed before the download stalled: %v", err)
	}
	if framework.ImageExists(t, "", ref) {
		t.Errorf("%s is in Docker after a cancelled pull", ref)
	}
	expectFreshDownload(t, b, proxy, ref)
}

// expectFreshDownload checks that Docker really dropped a stalled pull of
// ref: with the registry well again, a new pull starts a download of its
// own and succeeds. Had Docker kept the stalled download, the new pull would
// have joined it and hung. (Docker 20.10 keeps the stalled connection to the
// registry open after it gave the download up, so the proxy cannot see the
// cancellation itself.)
func expectFreshDownload(t *testing.T, b *framework.Berth, proxy *framework.ThrottleProxy, ref string) {
	t.Helper()
	before := proxy.BlobRequests()
	proxy.StallAfter(-1)
	// Docker notices that Berth hung up a moment after Berth returned; a
	// pull arriving in that moment joins the stalled download and hangs
	// until it gives up, which releases the download for the next try.
	// Had Docker kept Berth's pull, every try would hang.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err = pull(ctx, b, ref, nil)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("pull after the stalled one was cancelled: %v", err)
	}
	if proxy.BlobRequests() == before {
		t.Errorf("the new pull downloaded nothing")
	}
}

func TestCancelledPullRequestCancelsDockerPull(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	proxy := framework.StartThrottleProxy(t, reg.Addr)
	img := pushImage(t, reg.Addr, framework.ImageOptions{Size: 2 << 20})
	ref := proxy.Addr + "/" + strings.TrimPrefix(img.Ref, reg.Addr+"/")
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })

	proxy.StallAfter(256 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := pull(ctx, berth, ref, nil); done <- err }()
	waitForCount(t, "stalled downloads", proxy.Stalls, 1)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("cancelled PullImage = %v, want Canceled", err)
	}
	if framework.ImageExists(t, "", ref) {
		t.Errorf("%s is in Docker after a cancelled pull", ref)
	}
	expectFreshDownload(t, berth, proxy, ref)
}

// waitForCount waits up to a minute for get() to reach want.
func waitForCount(t *testing.T, what string, get func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want ≥ %d", what, get(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dockerImageID(t *testing.T, ref string) string {
	t.Helper()
	dc, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	img, err := dc.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("docker inspect %s: %v", ref, err)
	}
	return img.ID
}
