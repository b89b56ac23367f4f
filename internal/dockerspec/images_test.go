package dockerspec

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	dockerimage "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	hex64  = "1490d69d2e506d1bf5588f9711a86296bf700af6f176a4fe5baf6b192f0bd714"
	digest = "sha256:63c328ac24c55d3624a63a65553a68de59ebb2b18abacde178182bbecc331227"
)

func TestImageID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sha256:" + hex64, "sha256:" + hex64},
		{hex64, "sha256:" + hex64},
		{" sha256:" + hex64 + "\n", "sha256:" + hex64},
		{"", ""},
		// Other algorithms pass through untouched.
		{"sha512:abc", "sha512:abc"},
	} {
		if got := ImageID(tc.in); got != tc.want {
			t.Errorf("ImageID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseImageRef(t *testing.T) {
	for _, tc := range []struct {
		in, canonical, docker, registry string
		wantErr                         bool
	}{
		{in: "busybox", canonical: "docker.io/library/busybox:latest", docker: "busybox:latest", registry: "docker.io"},
		{in: "busybox:1.36", canonical: "docker.io/library/busybox:1.36", docker: "busybox:1.36", registry: "docker.io"},
		{in: "docker.io/library/busybox", canonical: "docker.io/library/busybox:latest", docker: "busybox:latest", registry: "docker.io"},
		{in: "library/busybox:1", canonical: "docker.io/library/busybox:1", docker: "busybox:1", registry: "docker.io"},
		{in: "someone/app", canonical: "docker.io/someone/app:latest", docker: "someone/app:latest", registry: "docker.io"},
		{in: "127.0.0.1:5000/app:v1", canonical: "127.0.0.1:5000/app:v1", docker: "127.0.0.1:5000/app:v1", registry: "127.0.0.1:5000"},
		{in: "localhost:5000/a/b", canonical: "localhost:5000/a/b:latest", docker: "localhost:5000/a/b:latest", registry: "localhost:5000"},
		{in: "berth.local/pause:1.0", canonical: "berth.local/pause:1.0", docker: "berth.local/pause:1.0", registry: "berth.local"},
		{in: "busybox@" + digest, canonical: "docker.io/library/busybox@" + digest, docker: "busybox@" + digest, registry: "docker.io"},
		// A digest wins over a tag.
		{in: "127.0.0.1:5000/app:v1@" + digest, canonical: "127.0.0.1:5000/app@" + digest, docker: "127.0.0.1:5000/app@" + digest, registry: "127.0.0.1:5000"},
		{in: "sha256:" + hex64, canonical: "sha256:" + hex64, docker: "sha256:" + hex64},
		{in: hex64, canonical: "sha256:" + hex64, docker: "sha256:" + hex64},
		{in: "", wantErr: true},
		{in: "upper/CASE", wantErr: true},
		{in: "a@sha256:short", wantErr: true},
		{in: "bad ref", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseImageRef(tc.in)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseImageRef(%q) = %v, %v; want an invalid-argument error", tc.in, r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tc.canonical || r.Docker() != tc.docker || r.Registry() != tc.registry {
				t.Errorf("ParseImageRef(%q) = %q / %q / %q, want %q / %q / %q", tc.in,
					r.String(), r.Docker(), r.Registry(), tc.canonical, tc.docker, tc.registry)
			}
		})
	}
}

func TestDockerLookupRef(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "busybox", want: "busybox"},
		{in: "docker.io/library/busybox:latest", want: "docker.io/library/busybox:latest"},
		{in: "1490d69d2e50", want: "1490d69d2e50"}, // a short id, or a name: Docker decides
		{in: "sha256:1490d69d2e50", want: "sha256:1490d69d2e50"},
		{in: hex64, want: "sha256:" + hex64},
		{in: "app:v1@" + digest, want: "app@" + digest},
		{in: "docker.io/library/app@" + digest, want: "app@" + digest},
		{in: "", wantErr: true},
		{in: "Bad:Ref", wantErr: true},
	} {
		got, err := DockerLookupRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("DockerLookupRef(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPinnedSet(t *testing.T) {
	p, err := NewPinnedSet("berth.local/pause:1.0", "busybox", "127.0.0.1:5000/app@"+digest, "sha256:"+hex64, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		img  ImageRefs
		want bool
	}{
		{"sandbox image by its tag", ImageRefs{ID: "sha256:aa", RepoTags: []string{"berth.local/pause:1.0"}}, true},
		{"bare name means latest", ImageRefs{ID: "sha256:bb", RepoTags: []string{"busybox:latest"}}, true},
		{"fully qualified tag", ImageRefs{ID: "sha256:bb", RepoTags: []string{"docker.io/library/busybox:latest"}}, true},
		{"other tag of a pinned repo", ImageRefs{ID: "sha256:cc", RepoTags: []string{"busybox:1.36"}}, false},
		{"by repo digest", ImageRefs{ID: "sha256:dd", RepoDigests: []string{"127.0.0.1:5000/app@" + digest}}, true},
		{"same digest, other registry", ImageRefs{ID: "sha256:dd", RepoDigests: []string{"127.0.0.1:5001/app@" + digest}}, false},
		{"by id", ImageRefs{ID: "sha256:" + hex64}, true},
		{"placeholders", ImageRefs{ID: "sha256:ee", RepoTags: []string{"<none>:<none>"}, RepoDigests: []string{"<none>@<none>"}}, false},
	} {
		if got := p.Pinned(tc.img); got != tc.want {
			t.Errorf("%s: Pinned(%+v) = %v, want %v", tc.name, tc.img, got, tc.want)
		}
	}
	if _, err := NewPinnedSet("ok", "NOT OK"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "NOT OK") {
		t.Errorf("NewPinnedSet with a bad entry = %v, want an error naming it", err)
	}
	var none PinnedSet
	if none.Pinned(ImageRefs{ID: "sha256:" + hex64}) {
		t.Errorf("the zero PinnedSet pins images")
	}
}

func TestImageFilter(t *testing.T) {
	busybox := ImageRefs{ID: "sha256:" + hex64, RepoTags: []string{"busybox:latest", "busybox:1.36"}, RepoDigests: []string{"busybox@" + digest}}
	local := ImageRefs{ID: "sha256:abcdef" + hex64[6:], RepoTags: []string{"127.0.0.1:5000/app:v1"}}
	dangling := ImageRefs{ID: "sha256:0123" + hex64[4:], RepoTags: []string{"<none>:<none>"}, RepoDigests: []string{"<none>@<none>"}}
	all := []ImageRefs{busybox, local, dangling}
	for _, tc := range []struct {
		filter string
		want   []ImageRefs
	}{
		{"", all},
		{"busybox", []ImageRefs{busybox}},
		{"busybox:1.36", []ImageRefs{busybox}},
		{"docker.io/library/busybox:latest", []ImageRefs{busybox}},
		{"busybox:2", nil},
		{"busybox@" + digest, []ImageRefs{busybox}},
		{"127.0.0.1:5000/app", []ImageRefs{local}},
		{"127.0.0.1:5000/app:v2", nil},
		{"sha256:" + hex64, []ImageRefs{busybox}},
		{"abcdef", []ImageRefs{local}}, // an id prefix (and a name nobody has)
		{"sha256:0123", []ImageRefs{dangling}},
		{"nothing", nil},
	} {
		f, err := NewImageFilter(tc.filter)
		if err != nil {
			t.Fatalf("NewImageFilter(%q): %v", tc.filter, err)
		}
		var got []ImageRefs
		for _, img := range all {
			if f.Match(img) {
				got = append(got, img)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("filter %q matched %v, want %v", tc.filter, got, tc.want)
		}
	}
	if _, err := NewImageFilter("Bad Ref"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("NewImageFilter(bad) = %v, want invalid argument", err)
	}
}

func TestImageUser(t *testing.T) {
	for _, tc := range []struct {
		in       string
		uid      *int64
		username string
	}{
		{"", nil, ""},
		{"0", ptr(0), ""},
		{"1234", ptr(1234), ""},
		{"1234:1234", ptr(1234), ""},
		{"app", nil, "app"},
		{"app:staff", nil, "app"},
		{"app:1234", nil, "app"},
		{" 42 ", ptr(42), ""},
		{"-1", nil, "-1"},
	} {
		uid, name := ImageUser(tc.in)
		var gotUID *int64
		if uid != nil {
			gotUID = &uid.Value
		}
		if !reflect.DeepEqual(gotUID, tc.uid) || name != tc.username {
			t.Errorf("ImageUser(%q) = %v, %q; want %v, %q", tc.in, gotUID, name, tc.uid, tc.username)
		}
	}
}

func ptr(v int64) *int64 { return &v }

func TestImageFromInspectAndSummary(t *testing.T) {
	pinned, _ := NewPinnedSet("127.0.0.1:5000/app:v1")
	cfg := &dockerimage.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{User: "1234:1234"}}
	inspect := image.InspectResponse{
		ID:          "sha256:" + hex64,
		RepoTags:    []string{"127.0.0.1:5000/app:v1", "app:local"},
		RepoDigests: []string{"127.0.0.1:5000/app@" + digest},
		Size:        3001194,
		Config:      cfg,
	}
	want := &runtimeapi.Image{
		Id:          "sha256:" + hex64,
		RepoTags:    []string{"127.0.0.1:5000/app:v1", "app:local"},
		RepoDigests: []string{"127.0.0.1:5000/app@" + digest},
		Size:        3001194,
		Uid:         &runtimeapi.Int64Value{Value: 1234},
		Pinned:      true,
	}
	if got := ImageFromInspect(ClassicImageStore, inspect, pinned); !reflect.DeepEqual(got, want) {
		t.Errorf("ImageFromInspect = %v, want %v", got, want)
	}
	summary := image.Summary{ID: inspect.ID, RepoTags: inspect.RepoTags, RepoDigests: inspect.RepoDigests, Size: inspect.Size}
	if got := ImageFromSummary(ClassicImageStore, summary, "1234:1234", pinned); !reflect.DeepEqual(got, want) {
		t.Errorf("ImageFromSummary = %v, want %v", got, want)
	}

	// An untagged image on Docker 20.10, with a named user and no config.
	dangling := image.Summary{ID: "sha256:" + hex64, RepoTags: []string{"<none>:<none>"}, RepoDigests: []string{"<none>@<none>"}, Size: 10}
	got := ImageFromSummary(ClassicImageStore, dangling, "app", PinnedSet{})
	if len(got.RepoTags) != 0 || len(got.RepoDigests) != 0 || got.Username != "app" || got.Uid != nil || got.Pinned {
		t.Errorf("dangling image = %v", got)
	}
	if got := ImageFromInspect(ClassicImageStore, image.InspectResponse{ID: "sha256:" + hex64}, PinnedSet{}); got.Uid != nil || got.Username != "" {
		t.Errorf("image without config = %v, want no user", got)
	}
}

func TestNewImageRefs(t *testing.T) {
	id := "sha256:" + hex64
	for _, tc := range []struct {
		name          string
		store         ImageStore
		tags, digests []string
		wantT, wantD  []string
	}{
		{
			name:    "classic: as Docker reports them",
			store:   ClassicImageStore,
			tags:    []string{"127.0.0.1:5000/app:v1", "app:local"},
			digests: []string{"127.0.0.1:5000/app@" + digest},
			wantT:   []string{"127.0.0.1:5000/app:v1", "app:local"},
			wantD:   []string{"127.0.0.1:5000/app@" + digest},
		},
		{
			name:    "classic: placeholders of an untagged image dropped",
			store:   ClassicImageStore,
			tags:    []string{"<none>:<none>"},
			digests: []string{"<none>@<none>"},
		},
		{
			// Docker's inspect: a name pulled by digest among the tags,
			// every name's digest among the digests.
			name:    "containerd: inspect",
			store:   ContainerdImageStore,
			tags:    []string{"127.0.0.1:5000/app:v1", "127.0.0.1:5001/app@" + id, "hub:v1"},
			digests: []string{"127.0.0.1:5000/app@" + id, "127.0.0.1:5001/app@" + id, "hub@" + id},
			wantT:   []string{"127.0.0.1:5000/app:v1", "hub:v1"},
			wantD:   []string{"127.0.0.1:5000/app@" + id, "127.0.0.1:5001/app@" + id, "hub@" + id},
		},
		{
			// Docker's list of the same image: one digest only.
			name:    "containerd: list",
			store:   ContainerdImageStore,
			tags:    []string{"127.0.0.1:5000/app:v1", "127.0.0.1:5001/app@" + id, "hub:v1"},
			digests: []string{"hub@" + id},
			wantT:   []string{"127.0.0.1:5000/app:v1", "hub:v1"},
			wantD:   []string{"127.0.0.1:5000/app@" + id, "127.0.0.1:5001/app@" + id, "hub@" + id},
		},
		{
			name:    "containerd: no platform for this host (a bare digest)",
			store:   ContainerdImageStore,
			tags:    []string{"app:v1"},
			digests: []string{id},
			wantT:   []string{"app:v1"},
			wantD:   []string{"app@" + id},
		},
		{
			name:  "containerd: untagged",
			store: ContainerdImageStore,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewImageRefs(tc.store, hex64, tc.tags, tc.digests)
			if got.ID != id || strings.Join(got.RepoTags, ",") != strings.Join(tc.wantT, ",") || strings.Join(got.RepoDigests, ",") != strings.Join(tc.wantD, ",") {
				t.Errorf("NewImageRefs = %+v\nwant tags %v, digests %v", got, tc.wantT, tc.wantD)
			}
		})
	}
	// A filter by a digest Docker lists among the tags finds the image.
	refs := NewImageRefs(ContainerdImageStore, id, []string{"127.0.0.1:5001/app@" + id}, nil)
	f, err := NewImageFilter("127.0.0.1:5001/app@" + id)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(refs) {
		t.Errorf("filter by digest does not match %+v", refs)
	}
}

func TestImageVerboseInfo(t *testing.T) {
	img := image.InspectResponse{
		ID:           "sha256:" + hex64,
		RepoTags:     []string{"app:v1"},
		Architecture: "amd64",
		Os:           "linux",
		Config:       &dockerimage.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, User: "app"}},
		RootFS:       image.RootFS{Type: "layers", Layers: []string{digest}},
	}
	history := []image.HistoryResponseItem{{ID: "sha256:" + hex64, CreatedBy: "import", Size: 10}}
	info, err := ImageVerboseInfo(ClassicImageStore, img, history)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ID     string `json:"id"`
		Config struct {
			Cmd  []string `json:"Cmd"`
			User string   `json:"User"`
		} `json:"config"`
		RootFS  image.RootFS                `json:"rootfs"`
		History []image.HistoryResponseItem `json:"history"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		t.Fatalf("info is not JSON: %v: %s", err, info["info"])
	}
	if v.ID != img.ID || v.Config.User != "app" || len(v.Config.Cmd) != 1 || len(v.RootFS.Layers) != 1 || len(v.History) != 1 {
		t.Errorf("verbose info = %s", info["info"])
	}
}

func TestRegistryAuth(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name    string
		in      *runtimeapi.AuthConfig
		want    registry.AuthConfig
		none    bool
		wantErr string
	}{
		{name: "nil", in: nil, none: true},
		{name: "empty", in: &runtimeapi.AuthConfig{}, none: true},
		{name: "username and password",
			in:   &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "127.0.0.1:5000"},
			want: registry.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "127.0.0.1:5000"}},
		{name: "auth field is decoded",
			in:   &runtimeapi.AuthConfig{Auth: b64([]byte("alice:pa:ss"))},
			want: registry.AuthConfig{Username: "alice", Password: "pa:ss"}},
		{name: "auth field without padding",
			in:   &runtimeapi.AuthConfig{Auth: strings.TrimRight(b64([]byte("bob:x")), "=")},
			want: registry.AuthConfig{Username: "bob", Password: "x"}},
		{name: "explicit username wins over auth",
			in:   &runtimeapi.AuthConfig{Username: "alice", Password: "p", Auth: b64([]byte("bob:q"))},
			want: registry.AuthConfig{Username: "alice", Password: "p"}},
		{name: "identity token",
			in:   &runtimeapi.AuthConfig{Username: "<token>", IdentityToken: "refresh-me", ServerAddress: "reg"},
			want: registry.AuthConfig{Username: "<token>", IdentityToken: "refresh-me", ServerAddress: "reg"}},
		{name: "registry token",
			in:   &runtimeapi.AuthConfig{RegistryToken: "bearer-token"},
			want: registry.AuthConfig{RegistryToken: "bearer-token"}},
		{name: "auth not base64", in: &runtimeapi.AuthConfig{Auth: "%%%"}, wantErr: "auth.auth"},
		{name: "auth without colon", in: &runtimeapi.AuthConfig{Auth: b64([]byte("alice"))}, wantErr: "auth.auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RegistryAuth(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.Field(err) != tc.wantErr {
					t.Fatalf("RegistryAuth = %q, %v; want an error on %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.none {
				if got != "" {
					t.Fatalf("RegistryAuth = %q, want no header", got)
				}
				return
			}
			// Docker decodes the header with base64.URLEncoding.
			raw, err := base64.URLEncoding.DecodeString(got)
			if err != nil {
				t.Fatalf("header %q is not URL-safe base64: %v", got, err)
			}
			var cfg registry.AuthConfig
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg != tc.want {
				t.Errorf("header decodes to %+v, want %+v", cfg, tc.want)
			}
		})
	}
}
