package framework

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/pause"
)

// ImageOptions describe an image BuildImage makes.
type ImageOptions struct {
	// Size is how many bytes of random data the image's one layer holds
	// (random, so it neither compresses nor matches any other image).
	// Default 4 KiB.
	Size int
	// User is the image config's USER; empty names none.
	User string
	// Pause makes it a sandbox image: Berth's pause program is its
	// /pause and its entrypoint (beside the random data, so the image is
	// still distinct from Berth's own).
	Pause bool
}

// UniqueName returns a name unique to this test run, e.g. for a
// repository: prefix-<random>.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// BuildImage imports a new single-layer image into the Docker at host
// (DockerHost() when empty) under ref, and returns its id. Every image
// built this way is distinct. It is removed, with every tag, when tb ends.
func BuildImage(tb testing.TB, host, ref string, opts ImageOptions) string {
	tb.Helper()
	c := dockerClientFor(tb, host)
	if opts.Size == 0 {
		opts.Size = 4 << 10
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	data := make([]byte, opts.Size)
	_, _ = rand.Read(data)
	files := []struct {
		name string
		data []byte
		mode int64
	}{{"data.bin", data, 0o644}, {"id", []byte(ref + "\n"), 0o644}}
	changes := []string{`CMD ["/data.bin"]`}
	if opts.Pause {
		prog, err := pause.NativeProgram()
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, struct {
			name string
			data []byte
			mode int64
		}{"pause", prog, 0o755})
		changes = []string{`ENTRYPOINT ["/pause"]`}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Now()}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if opts.User != "" {
		changes = append(changes, "USER "+opts.User)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(2*time.Minute))
	defer cancel()
	res, err := c.ImageImport(ctx, client.ImageImportSource{Source: &layer, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		tb.Fatalf("importing %s: %v", ref, err)
	}
	out, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		tb.Fatalf("importing %s: %v", ref, err)
	}
	var last struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		if err := dec.Decode(&last); err != nil {
			tb.Fatalf("importing %s: %v: %s", ref, err, out)
		}
		if last.Error != "" {
			tb.Fatalf("importing %s: %s", ref, last.Error)
		}
	}
	id := strings.TrimSpace(last.Status)
	if !strings.HasPrefix(id, "sha256:") {
		tb.Fatalf("importing %s: no image id in %s", ref, out)
	}
	tb.Cleanup(func() { RemoveImage(tb, host, id) })
	return id
}

// RemoveImage removes an image (by id, tag or digest) and every tag it has
// from the Docker at host, ignoring an image that is not there.
func RemoveImage(tb testing.TB, host, ref string) {
	tb.Helper()
	c := dockerClientFor(tb, host)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(time.Minute))
	defer cancel()
	_, err := c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		tb.Errorf("removing image %s: %v", ref, err)
	}
}

// TagImage adds the tag target to the image source.
func TagImage(tb testing.TB, host, source, target string) {
	tb.Helper()
	c := dockerClientFor(tb, host)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(time.Minute))
	defer cancel()
	if _, err := c.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: target}); err != nil {
		tb.Fatalf("tagging %s as %s: %v", source, target, err)
	}
}

// PushImage pushes ref (which names its registry) from the Docker at host
// and returns the manifest (or index) digest the registry stored.
//
// NOTE: the two image stores report the digest differently. Docker's classic
// store sends it twice: in an aux message ({"Tag", "Digest", "Size"}) and in
// the last status line; the containerd image store (current Docker) sends
// only the status line, "<tag>: digest: sha256:… size: N". The aux message is
// preferred where there is one; the status line is the fallback both share.
func PushImage(tb testing.TB, host, ref string) string {
	tb.Helper()
	c := dockerClientFor(tb, host)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(2*time.Minute))
	defer cancel()
	// Docker 20.10 insists on an X-Registry-Auth header, even an empty one.
	res, err := c.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		tb.Fatalf("pushing %s: %v", ref, err)
	}
	var auxDigest, statusDigest string
	var lastStatus string
	for msg, err := range res.JSONMessages(ctx) {
		if err != nil {
			tb.Fatalf("pushing %s: %v", ref, err)
		}
		if msg.Error != nil {
			tb.Fatalf("pushing %s: %s", ref, msg.Error.Message)
		}
		if msg.Aux != nil {
			var aux struct{ Digest string }
			if json.Unmarshal(*msg.Aux, &aux) == nil && aux.Digest != "" {
				auxDigest = aux.Digest
			}
		}
		if d, ok := pushStatusDigest(msg.Status); ok {
			statusDigest = d
		}
		if msg.Status != "" {
			lastStatus = msg.Status
		}
	}
	switch {
	case auxDigest != "":
		if statusDigest != "" && statusDigest != auxDigest {
			tb.Fatalf("pushing %s: Docker reported digest %s and %s", ref, auxDigest, statusDigest)
		}
		return auxDigest
	case statusDigest != "":
		return statusDigest
	}
	tb.Fatalf("pushing %s: Docker reported no digest (last status: %q)", ref, lastStatus)
	return ""
}

var sha256Digest = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// pushStatusDigest returns the digest from a push's closing status line,
// "<tag>: digest: sha256:<hex> size: <n>", which both image stores send.
func pushStatusDigest(status string) (string, bool) {
	_, rest, ok := strings.Cut(status, ": digest: ")
	if !ok {
		return "", false
	}
	d, _, _ := strings.Cut(rest, " ")
	if !sha256Digest.MatchString(d) {
		return "", false
	}
	return d, true
}

// ContainerdImageStore reports whether the Docker at host (DockerHost()
// when empty) keeps images in containerd's store (`docker info` reports a
// containerd snapshotter as its driver type) rather than the classic one.
func ContainerdImageStore(tb testing.TB, host string) bool {
	tb.Helper()
	c := dockerClientFor(tb, host)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(time.Minute))
	defer cancel()
	res, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		tb.Fatalf("docker info: %v", err)
	}
	for _, kv := range res.Info.DriverStatus {
		if kv[0] == "driver-type" && strings.HasPrefix(kv[1], "io.containerd.snapshotter") {
			return true
		}
	}
	return false
}

// ImageExists reports whether the Docker at host has an image ref names.
func ImageExists(tb testing.TB, host, ref string) bool {
	tb.Helper()
	c := dockerClientFor(tb, host)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(time.Minute))
	defer cancel()
	_, err := c.ImageInspect(ctx, ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		tb.Fatalf("inspecting image %s: %v", ref, err)
	}
	return err == nil
}

// dockerClientFor returns a client for host (DockerHost() when empty),
// closed when tb ends.
func dockerClientFor(tb testing.TB, host string) *client.Client {
	tb.Helper()
	if host == "" {
		host = DockerHost()
	}
	c, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// errNotReady is returned while a helper process is still starting.
var errNotReady = errors.New("not ready")

// waitUntil polls fn until it returns nil, the deadline passes, or exited
// is closed.
func waitUntil(timeout time.Duration, exited <-chan struct{}, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
