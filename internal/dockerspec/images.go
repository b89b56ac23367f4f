package dockerspec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	godigest "github.com/opencontainers/go-digest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

var (
	fullID   = regexp.MustCompile(`^(sha256:)?[a-f0-9]{64}$`)
	idPrefix = regexp.MustCompile(`^(sha256:)?[a-f0-9]{1,64}$`)
)

// ImageID returns the CRI id of a Docker image given Docker's own id for it:
// the Id of an image inspect or list entry, or the Image field of a
// container inspect (ImageID of a container list entry). It is the id
// PullImage returns, ListImages and ImageStatus report and ContainerStatus
// shows, so CRI clients can compare them.
//
// NOTE: Docker's id is already the right identity under both image stores:
// with Docker's classic store it is the digest of the image config, with the
// containerd image store it is the digest of the manifest or index the image
// was pulled as (and a container records the same id). The same image pulled
// by tag, by digest or from two registries therefore has one id. Berth never
// derives the id from a repo digest, which would differ between registries.
func ImageID(dockerID string) string {
	id := strings.TrimSpace(dockerID)
	if len(id) == 64 && fullID.MatchString(id) {
		return "sha256:" + id
	}
	return id
}

// ImageRef is an image reference as a CRI client gives it in ImageSpec.image,
// resolved.
type ImageRef struct {
	// ID is the image id ("sha256:<64 hex>") when the reference is one.
	ID string
	// Named is the normalised reference (docker.io/library/busybox:latest),
	// nil when the reference is an id. It carries a tag or a digest, never
	// both: a digest wins, as it names the content.
	Named reference.Named
}

// ParseImageRef resolves a CRI image reference: a name with an optional tag
// or digest (busybox, busybox:1.36, docker.io/library/busybox@sha256:…,
// 127.0.0.1:5000/app:v1) or a full image id (sha256:<hex> or <hex>).
// A bare name gets the tag "latest".
func ParseImageRef(s string) (ImageRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ImageRef{}, fmt.Errorf("empty image reference: %w", errdefs.ErrInvalidArgument)
	}
	if fullID.MatchString(s) {
		return ImageRef{ID: ImageID(strings.TrimPrefix(s, "sha256:"))}, nil
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return ImageRef{}, fmt.Errorf("%q is not a valid image reference: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	if digested, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			named, err = reference.WithDigest(reference.TrimNamed(named), digested.Digest())
			if err != nil {
				return ImageRef{}, fmt.Errorf("%q: %v: %w", s, err, errdefs.ErrInvalidArgument)
			}
		}
		return ImageRef{Named: named}, nil
	}
	return ImageRef{Named: reference.TagNameOnly(named)}, nil
}

// String returns the canonical form: the id, or the fully qualified
// reference (docker.io/library/busybox:latest).
func (r ImageRef) String() string {
	if r.Named == nil {
		return r.ID
	}
	return r.Named.String()
}

// Docker returns the form to hand to Docker's API: the id, or the familiar
// reference (busybox:latest, 127.0.0.1:5000/app@sha256:…).
func (r ImageRef) Docker() string {
	if r.Named == nil {
		return r.ID
	}
	return reference.FamiliarString(r.Named)
}

// Registry returns the registry host the reference points at
// (docker.io, 127.0.0.1:5000), or "" for an id.
func (r ImageRef) Registry() string {
	if r.Named == nil {
		return ""
	}
	return reference.Domain(r.Named)
}

// DockerLookupRef returns what to ask Docker for when looking up (inspecting
// or removing) the image a CRI client names: the reference as given, so that
// Docker's own resolution applies (a bare name means :latest, a short id
// prefix finds the image), except that a reference with both a tag and a
// digest is looked up by its digest.
func DockerLookupRef(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("empty image reference: %w", errdefs.ErrInvalidArgument)
	}
	if idPrefix.MatchString(s) {
		// A full or short id, or a name made of hex digits; Docker
		// resolves names first, then id prefixes.
		if fullID.MatchString(s) {
			return ImageID(strings.TrimPrefix(s, "sha256:")), nil
		}
		return s, nil
	}
	r, err := ParseImageRef(s)
	if err != nil {
		return "", err
	}
	if _, digested := r.Named.(reference.Digested); digested {
		return r.Docker(), nil
	}
	return s, nil
}

// normalizeRef returns the canonical form of a repo tag or repo digest as
// Docker reports it (busybox:latest → docker.io/library/busybox:latest), and
// false for Docker's placeholders ("<none>:<none>") and anything unparsable.
func normalizeRef(s string) (reference.Named, bool) {
	if strings.HasPrefix(s, "<none>") {
		return nil, false
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, false
	}
	return named, true
}

// ImageRefs are the names an image is known by: its id, its tags and its
// repo digests (repository@digest), as CRI reports them.
type ImageRefs struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
}

// ImageStore is the store a Docker daemon keeps images in. It decides what
// an image id is, and so how an image's names read.
type ImageStore int

const (
	// ClassicImageStore is Docker's graph-driver store (the default up to
	// Docker 28): an image id is the digest of the image's config, and a
	// repo digest is recorded for each registry the image was pulled from
	// or pushed to.
	ClassicImageStore ImageStore = iota
	// ContainerdImageStore is containerd's store (the default of current
	// Docker): an image is a set of names, each pointing at one manifest
	// or index, whose digest is the image id.
	ContainerdImageStore
)

// NewImageRefs returns an image's names as CRI reports them, from Docker's
// id, RepoTags and RepoDigests for it (of an image list entry or an image
// inspect). Docker's placeholders and unparsable names are dropped; the
// tags and digests keep Docker's familiar spelling (busybox:latest).
//
// NOTE: under the containerd image store Docker reports names differently,
// and differently in its list and its inspect:
//   - a name pulled by digest (repo@sha256:…) is an image name like a tag,
//     and Docker lists it in RepoTags: it is a repo digest, not a tag;
//   - every name's repo digest is name@<image id> (the id is the manifest
//     digest). Docker's inspect reports them all, its list only one.
//
// Both cases are derived here from the names themselves, so that
// ListImages and ImageStatus report the same tags and digests for an image.
func NewImageRefs(store ImageStore, id string, repoTags, repoDigests []string) ImageRefs {
	refs := ImageRefs{ID: ImageID(id)}
	seen := map[string]bool{}
	addDigest := func(s string) {
		if !seen[s] {
			seen[s] = true
			refs.RepoDigests = append(refs.RepoDigests, s)
		}
	}
	for _, s := range repoTags {
		n, ok := normalizeRef(s)
		if !ok {
			continue
		}
		if _, digested := n.(reference.Digested); digested {
			addDigest(reference.FamiliarString(n))
			continue
		}
		refs.RepoTags = append(refs.RepoTags, s)
		if store != ContainerdImageStore {
			continue
		}
		if d, err := reference.WithDigest(reference.TrimNamed(n), godigest.Digest(refs.ID)); err == nil {
			addDigest(reference.FamiliarString(d))
		}
	}
	for _, s := range repoDigests {
		// Docker's list under the containerd store reports a bare digest
		// for an image none of whose platforms matches the host's.
		if n, ok := normalizeRef(s); ok {
			if _, digested := n.(reference.Digested); digested {
				addDigest(s)
			}
		}
	}
	return refs
}

// PinnedSet answers whether an image is pinned: named, by any reference or
// by id, in the sandbox image or --pinned-images.
type PinnedSet struct {
	refs map[string]bool // canonical references and ids
}

// NewPinnedSet builds a set from references as an operator writes them
// (pause:3.9, registry.k8s.io/pause:3.9, sha256:…). Invalid entries are
// returned as an error; the valid ones are still in the set.
func NewPinnedSet(refs ...string) (PinnedSet, error) {
	p := PinnedSet{refs: map[string]bool{}}
	var bad []string
	for _, s := range refs {
		if strings.TrimSpace(s) == "" {
			continue
		}
		r, err := ParseImageRef(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		p.refs[r.String()] = true
	}
	if len(bad) > 0 {
		return p, fmt.Errorf("invalid pinned image reference(s) %q: %w", bad, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Pinned reports whether the image is pinned.
func (p PinnedSet) Pinned(img ImageRefs) bool {
	if len(p.refs) == 0 {
		return false
	}
	if p.refs[ImageID(img.ID)] {
		return true
	}
	for _, list := range [][]string{img.RepoTags, img.RepoDigests} {
		for _, s := range list {
			if n, ok := normalizeRef(s); ok && p.refs[n.String()] {
				return true
			}
		}
	}
	return false
}

// ImageFilter selects images for ListImages by the reference in
// ImageFilter.image.image.
type ImageFilter struct {
	all      bool
	idPrefix string // hex, without "sha256:"
	exact    string // canonical reference with tag or digest
	repo     string // canonical repository name, any tag or digest
}

// NewImageFilter parses the filter reference. Empty selects every image; a
// name with a tag or digest selects the image with exactly that reference; a
// bare name selects every image of that repository; an id or id prefix
// selects by id.
func NewImageFilter(s string) (ImageFilter, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ImageFilter{all: true}, nil
	}
	var f ImageFilter
	if idPrefix.MatchString(s) {
		f.idPrefix = strings.TrimPrefix(s, "sha256:")
		if strings.HasPrefix(s, "sha256:") || len(f.idPrefix) == 64 {
			return f, nil
		}
		// Also a valid name (e.g. "abc123"): match either.
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		if f.idPrefix != "" {
			return f, nil
		}
		return ImageFilter{}, fmt.Errorf("%q is not a valid image reference: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	if reference.IsNameOnly(named) {
		f.repo = named.Name()
	} else {
		r, err := ParseImageRef(s)
		if err != nil {
			return ImageFilter{}, err
		}
		f.exact = r.String()
	}
	return f, nil
}

// Match reports whether the filter selects the image.
func (f ImageFilter) Match(img ImageRefs) bool {
	if f.all {
		return true
	}
	if f.idPrefix != "" && strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), f.idPrefix) {
		return true
	}
	if f.exact == "" && f.repo == "" {
		return false
	}
	for _, list := range [][]string{img.RepoTags, img.RepoDigests} {
		for _, s := range list {
			n, ok := normalizeRef(s)
			if !ok {
				continue
			}
			if f.exact != "" && n.String() == f.exact {
				return true
			}
			if f.repo != "" && n.Name() == f.repo {
				return true
			}
		}
	}
	return false
}

// ImageUser splits an image config's User ("1000", "1000:1000", "app",
// "app:staff") into what CRI reports: a numeric uid, or a user name. Both
// are empty when the image names no user (it runs as root).
func ImageUser(user string) (*runtimeapi.Int64Value, string) {
	user, _, _ = strings.Cut(strings.TrimSpace(user), ":")
	if user == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil && uid >= 0 {
		return &runtimeapi.Int64Value{Value: uid}, ""
	}
	return nil, user
}

// SummaryRefs returns the names of an entry of Docker's image list.
func SummaryRefs(store ImageStore, s image.Summary) ImageRefs {
	return NewImageRefs(store, s.ID, s.RepoTags, s.RepoDigests)
}

// InspectRefs returns the names of an image Docker inspected.
func InspectRefs(store ImageStore, img image.InspectResponse) ImageRefs {
	return NewImageRefs(store, img.ID, img.RepoTags, img.RepoDigests)
}

// ImageFromSummary converts an entry of Docker's image list. user is the
// image config's User (Docker's list does not carry it).
func ImageFromSummary(store ImageStore, s image.Summary, user string, pinned PinnedSet) *runtimeapi.Image {
	refs := SummaryRefs(store, s)
	uid, username := ImageUser(user)
	return &runtimeapi.Image{
		Id:          refs.ID,
		RepoTags:    refs.RepoTags,
		RepoDigests: refs.RepoDigests,
		Size:        uint64(max(s.Size, 0)),
		Uid:         uid,
		Username:    username,
		Pinned:      pinned.Pinned(refs),
	}
}

// ImageFromInspect converts Docker's image inspect.
func ImageFromInspect(store ImageStore, img image.InspectResponse, pinned PinnedSet) *runtimeapi.Image {
	refs := InspectRefs(store, img)
	uid, username := ImageUser(ImageConfigUser(img))
	return &runtimeapi.Image{
		Id:          refs.ID,
		RepoTags:    refs.RepoTags,
		RepoDigests: refs.RepoDigests,
		Size:        uint64(max(img.Size, 0)),
		Uid:         uid,
		Username:    username,
		Pinned:      pinned.Pinned(refs),
	}
}

// ImageConfigUser returns the User of an image's config, "" if it has none.
func ImageConfigUser(img image.InspectResponse) string {
	if img.Config == nil {
		return ""
	}
	return img.Config.User
}

// imageVerboseInfo is ImageStatus's verbose "info" value.
type imageVerboseInfo struct {
	ID           string                      `json:"id"`
	RepoTags     []string                    `json:"repoTags"`
	RepoDigests  []string                    `json:"repoDigests"`
	Created      string                      `json:"created,omitempty"`
	Author       string                      `json:"author,omitempty"`
	Architecture string                      `json:"architecture,omitempty"`
	Variant      string                      `json:"variant,omitempty"`
	OS           string                      `json:"os,omitempty"`
	Size         int64                       `json:"size"`
	Config       any                         `json:"config,omitempty"`
	RootFS       image.RootFS                `json:"rootfs"`
	History      []image.HistoryResponseItem `json:"history,omitempty"`
}

// ImageVerboseInfo returns ImageStatus's verbose info: the key "info" holds
// the image's config, root filesystem and history as JSON.
func ImageVerboseInfo(store ImageStore, img image.InspectResponse, history []image.HistoryResponseItem) (map[string]string, error) {
	refs := InspectRefs(store, img)
	v := imageVerboseInfo{
		ID:           refs.ID,
		RepoTags:     refs.RepoTags,
		RepoDigests:  refs.RepoDigests,
		Created:      img.Created,
		Author:       img.Author,
		Architecture: img.Architecture,
		Variant:      img.Variant,
		OS:           img.Os,
		Size:         img.Size,
		RootFS:       img.RootFS,
		History:      history,
	}
	if img.Config != nil {
		v.Config = img.Config
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding image info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}

// RegistryAuth encodes CRI credentials as Docker's X-Registry-Auth header
// value; "" when there are none. The base64 "auth" field ("user:password")
// is decoded into a user name and password, since Docker's daemon does not
// read it; identity and registry tokens and the server address pass through.
func RegistryAuth(a *runtimeapi.AuthConfig) (string, error) {
	if a == nil {
		return "", nil
	}
	cfg := registry.AuthConfig{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		ServerAddress: a.GetServerAddress(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
	if a.GetAuth() != "" && cfg.Username == "" && cfg.Password == "" {
		user, pass, err := decodeBasicAuth(a.GetAuth())
		if err != nil {
			return "", errdefs.InvalidArgument("auth.auth", "%v", err)
		}
		cfg.Username, cfg.Password = user, pass
	}
	if cfg == (registry.AuthConfig{}) {
		return "", nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding registry credentials: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// decodeBasicAuth decodes the "auth" field of a Docker config file entry:
// base64 of "user:password".
func decodeBasicAuth(s string) (string, string, error) {
	s = strings.TrimSpace(s)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf(`does not decode to "user:password"`)
	}
	return user, pass, nil
}
