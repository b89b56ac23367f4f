package docker

import (
	"errors"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestPullProgress(t *testing.T) {
	bytes := func(cur int64) *jsonstream.Progress { return &jsonstream.Progress{Current: cur, Total: 4 << 20} }
	p := newPullProgress()
	advances := 0
	p.onAdvance = func() { advances++ }
	for i, tc := range []struct {
		msg  jsonstream.Message
		want bool
	}{
		{jsonstream.Message{Status: "Pulling from app", ID: "v1"}, true},
		{jsonstream.Message{Status: "Pulling fs layer", ID: "abc"}, true},
		{jsonstream.Message{Status: "Waiting", ID: "abc"}, false},
		{jsonstream.Message{Status: "Downloading", ID: "abc", Progress: bytes(1000)}, true},
		{jsonstream.Message{Status: "Downloading", ID: "abc", Progress: bytes(1000)}, false}, // repeated figure
		{jsonstream.Message{Status: "Downloading", ID: "abc", Progress: bytes(900)}, false},  // restarted download
		{jsonstream.Message{Status: "Retrying in 5 seconds", ID: "abc"}, false},
		{jsonstream.Message{Status: "Retrying in 4 seconds", ID: "abc"}, false},
		{jsonstream.Message{Status: "Downloading", ID: "abc", Progress: bytes(2000)}, true},
		{jsonstream.Message{Status: "Downloading", ID: "def", Progress: bytes(10)}, true}, // another layer
		{jsonstream.Message{Status: "Download complete", ID: "abc"}, true},
		{jsonstream.Message{Status: "Extracting", ID: "abc", Progress: bytes(32768)}, true},
		{jsonstream.Message{Status: "Pull complete", ID: "abc"}, true},
		{jsonstream.Message{Status: "Pull complete", ID: "abc"}, false},
		{jsonstream.Message{}, false},
		{jsonstream.Message{Status: "Digest: sha256:63c3"}, true},
	} {
		if got := p.observe(tc.msg); got != tc.want {
			t.Errorf("message %d %+v: progress = %v, want %v", i, tc.msg, got, tc.want)
		}
	}
	if advances != 9 {
		t.Errorf("onAdvance called %d times, want 9", advances)
	}
	if got := p.last(); got != "Digest: sha256:63c3" {
		t.Errorf("last = %q", got)
	}
	if got := newPullProgress().last(); !strings.Contains(got, "waiting for the registry") {
		t.Errorf("last before any message = %q", got)
	}
}

// daemonError is how the moby client reports an error response: its
// message, classified by the HTTP status.
func daemonError(kind error, msg string) error {
	if kind == nil {
		return errors.New("Error response from daemon: " + msg)
	}
	return errWithKind{kind: kind, msg: "Error response from daemon: " + msg}
}

type errWithKind struct {
	kind error
	msg  string
}

func (e errWithKind) Error() string        { return e.msg }
func (e errWithKind) Is(target error) bool { return errors.Is(e.kind, target) }

func TestClassifyPullError(t *testing.T) {
	const ref, reg = "127.0.0.1:5000/app:v1", "127.0.0.1:5000"
	for _, tc := range []struct {
		name string
		err  error
		kind error
		want []string
	}{
		{"wrong password (Docker 20.10)", daemonError(cerrdefs.ErrUnknown, "unauthorized: authentication required"),
			errdefs.ErrUnauthenticated, []string{"authentication to registry 127.0.0.1:5000 failed", "unauthorized"}},
		{"no credentials", daemonError(cerrdefs.ErrUnknown, `Head "http://127.0.0.1:5000/v2/app/manifests/v1": no basic auth credentials`),
			errdefs.ErrUnauthenticated, []string{"authentication", "no basic auth credentials"}},
		{"401 in the stream", pullStreamError(&jsonstream.Error{Code: 401, Message: "denied"}),
			errdefs.ErrUnauthenticated, []string{"authentication"}},
		{"unknown image", daemonError(cerrdefs.ErrNotFound, "manifest for 127.0.0.1:5000/app:v1 not found: manifest unknown: manifest unknown"),
			errdefs.ErrNotFound, []string{"not found", "manifest unknown"}},
		{"unknown repository on Docker Hub", daemonError(cerrdefs.ErrNotFound, "pull access denied for nope, repository does not exist or may require 'docker login'"),
			errdefs.ErrNotFound, []string{"not found, or access to it denied", "repository does not exist"}},
		{"connection refused", daemonError(cerrdefs.ErrUnknown, `Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused`),
			errdefs.ErrUnavailable, []string{"RegistryUnavailable", "registry 127.0.0.1:5000 is unreachable", "connection refused"}},
		{"no such host", daemonError(cerrdefs.ErrUnknown, `Get "https://nohost.invalid/v2/": dial tcp: lookup nohost.invalid: no such host`),
			errdefs.ErrUnavailable, []string{"RegistryUnavailable", "unreachable"}},
		{"reset mid-stream", pullStreamError(&jsonstream.Error{Message: "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"}),
			errdefs.ErrUnavailable, []string{"unreachable"}},
		{"invalid reference", daemonError(cerrdefs.ErrInvalidArgument, "invalid reference format"),
			errdefs.ErrInvalidArgument, []string{"invalid reference format"}},
		{"anything else", errors.New("failed to register layer: no space left on device"),
			errdefs.ErrInternal, []string{"no space left"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyPullError(ref, reg, tc.err)
			if !errors.Is(err, tc.kind) {
				t.Errorf("%v is not %v", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), ref) {
				t.Errorf("%q does not name the image", err)
			}
			if strings.Contains(err.Error(), "Error response from daemon") {
				t.Errorf("%q keeps the client's noise", err)
			}
		})
	}
}
