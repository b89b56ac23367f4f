package pause

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Docker is what Ensurer needs from Docker.
type Docker interface {
	// ImageLayers returns the diff ids of an image's layers, or an error
	// wrapping errdefs.ErrNotFound.
	ImageLayers(ctx context.Context, ref string) ([]string, error)
	// ImportImage creates an image from a root filesystem tar stream.
	ImportImage(ctx context.Context, rootfs io.Reader, ref string, changes []string) error
}

// RootFS returns a tar stream holding the pause program as /pause.
func RootFS() ([]byte, error) {
	prog, err := NativeProgram()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(prog)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Changes are the image settings of the pause image. It has no labels:
// Docker reports an image's labels as its containers' own.
func Changes() []string {
	return []string{
		`ENTRYPOINT ["/pause"]`,
	}
}

// Ensurer makes sure the sandbox image exists before a pod starts: it
// builds Berth's own image locally, and pulls any other, falling back to
// building it under that name when it cannot be pulled (air-gapped nodes).
type Ensurer struct {
	Image   string
	Builtin bool // Image is Berth's own: never pulled
	Docker  Docker
	// Pull pulls an image; nil disables pulling.
	Pull func(ctx context.Context, ref string) error
	Log  *slog.Logger

	mu sync.Mutex // serialises Ensure, so concurrent pods build once
}

// Ensure returns once the sandbox image is present. Berth's own image is
// rebuilt when the one present does not hold this Berth's pause program.
func (e *Ensurer) Ensure(ctx context.Context) error {
	if ok, err := e.present(ctx); err != nil || ok {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ok, err := e.present(ctx); err != nil || ok {
		return err
	}
	if !e.Builtin && e.Pull != nil {
		err := e.Pull(ctx, e.Image)
		if err == nil {
			return nil
		}
		e.Log.Warn("cannot pull the sandbox image; building Berth's pause image under its name", "image", e.Image, "error", err)
	}
	rootfs, err := RootFS()
	if err != nil {
		return fmt.Errorf("sandbox image %s: %w: %v", e.Image, errdefs.ErrFailedPrecondition, err)
	}
	if err := e.Docker.ImportImage(ctx, bytes.NewReader(rootfs), e.Image, Changes()); err != nil {
		return fmt.Errorf("building the sandbox image %s: %w", e.Image, err)
	}
	e.Log.Info("built the sandbox image locally", "image", e.Image, "bytes", len(rootfs))
	return nil
}

// present reports whether a usable sandbox image exists: any image under
// the configured name, or for Berth's own image one whose single layer is
// exactly the current pause program.
func (e *Ensurer) present(ctx context.Context) (bool, error) {
	layers, err := e.Docker.ImageLayers(ctx, e.Image)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sandbox image %s: %w", e.Image, err)
	}
	if !e.Builtin {
		return true, nil
	}
	want, err := LayerDigest()
	if err != nil {
		return false, err
	}
	return len(layers) == 1 && layers[0] == want, nil
}

// LayerDigest is the diff id (sha256 of the uncompressed tar) Docker gives
// the pause image's only layer.
func LayerDigest() (string, error) {
	rootfs, err := RootFS()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(rootfs)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
