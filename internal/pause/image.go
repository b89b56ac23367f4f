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
	"sync/atomic"
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

// Source says where the sandbox image in use came from.
type Source string

// The sources, as Status's verbose info reports them.
const (
	// Unchecked: no pod has needed the image since Berth started.
	Unchecked Source = "unchecked"
	// Present: the image was in Docker already.
	Present Source = "present"
	// Pulled: Berth pulled the image.
	Pulled Source = "pulled"
	// Built: Berth built its own pause program into the image, because
	// it is Berth's own image or because the pull failed (PullError).
	Built Source = "built"
)

// State is what the Ensurer found or did last.
type State struct {
	Image  string `json:"image"`
	Source Source `json:"source"`
	// PullError is why the image could not be pulled, when Berth's pause
	// program stands in for it.
	PullError string `json:"pullError,omitempty"`
}

// Ensurer makes sure the sandbox image exists before a pod starts: it
// builds Berth's own image locally, and pulls any other, falling back to
// building it under that name when it cannot be pulled (air-gapped nodes).
type Ensurer struct {
	Image   string
	Builtin bool // Image is Berth's own: never pulled
	Docker  Docker
	// Pull pulls an image; nil disables pulling. It is injected so that
	// the pull is the image service's own (credentials, shared pulls,
	// progress deadline) without this package knowing about it.
	Pull func(ctx context.Context, ref string) error
	Log  *slog.Logger

	mu sync.Mutex // serialises the slow path of Ensure, so concurrent pods pull or build once
	// retried is set once a stand-in built by an earlier run has had its
	// one pull attempt in this process; guarded by mu.
	retried bool

	stateMu sync.Mutex // guards state
	state   State

	// usable is set once Ensure has found or made the image, so that later
	// pods do not inspect it again (an inspect is ~10 ms on a current
	// Docker, on the path of every RunPodSandbox); Forget clears it when
	// the image turns out to be gone.
	usable atomic.Bool
}

// presence is what the image under Ensurer.Image is.
type presence int

const (
	absent presence = iota
	ready
	// standIn is Berth's pause program under a name that is not Berth's
	// own: the fallback of a pull that failed, maybe in an earlier run.
	standIn
)

// Ensure returns once the sandbox image is present. Berth's own image is
// rebuilt when the one present does not hold this Berth's pause program.
// Another image is pulled when absent; when the pull fails Berth's pause
// program is built under its name, and the pull is tried again once after
// each restart of Berth, so the real image replaces the stand-in when the
// registry is back.
func (e *Ensurer) Ensure(ctx context.Context) error {
	if e.usable.Load() {
		return nil
	}
	err := e.ensure(ctx)
	if err == nil {
		e.usable.Store(true)
	}
	return err
}

// Forget makes the next Ensure look at Docker again: the caller found the
// image gone (a pause container's create answered "no such image"), removed
// by hand or by another client since Ensure last saw it.
func (e *Ensurer) Forget() { e.usable.Store(false) }

func (e *Ensurer) ensure(ctx context.Context) error {
	if p, err := e.presence(ctx); err != nil || p == ready || (p == standIn && e.standInFinal()) {
		return e.noteUsable(p, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.presence(ctx)
	if err != nil || p == ready || (p == standIn && (e.retried || e.Pull == nil)) {
		return e.noteUsable(p, err)
	}
	if !e.Builtin && e.Pull != nil {
		e.retried = true
		err := e.Pull(ctx, e.Image)
		if err == nil {
			e.setState(Pulled, "")
			e.Log.Info("pulled the sandbox image", "image", e.Image)
			return nil
		}
		if ctx.Err() != nil {
			// The caller gave up: that says nothing about the registry.
			return err
		}
		if p == standIn {
			e.setState(Built, err.Error())
			e.Log.Warn("cannot pull the sandbox image; keeping Berth's pause program under its name", "image", e.Image, "error", err)
			return nil
		}
		e.Log.Warn("cannot pull the sandbox image; building Berth's pause image under its name", "image", e.Image, "error", err)
		return e.build(ctx, err.Error())
	}
	return e.build(ctx, "")
}

// build imports Berth's pause program as the image; pullErr is why (empty
// for Berth's own image).
func (e *Ensurer) build(ctx context.Context, pullErr string) error {
	rootfs, err := RootFS()
	if err != nil {
		if pullErr != "" {
			return fmt.Errorf("sandbox image %s cannot be pulled (%s) and Berth cannot build a stand-in: %w: %v", e.Image, pullErr, errdefs.ErrFailedPrecondition, err)
		}
		return fmt.Errorf("sandbox image %s: %w: %v", e.Image, errdefs.ErrFailedPrecondition, err)
	}
	if err := e.Docker.ImportImage(ctx, bytes.NewReader(rootfs), e.Image, Changes()); err != nil {
		return fmt.Errorf("building the sandbox image %s: %w", e.Image, err)
	}
	e.setState(Built, pullErr)
	e.Log.Info("built the sandbox image locally", "image", e.Image, "bytes", len(rootfs))
	return nil
}

// standInFinal reports whether a stand-in is to be used as it is: its one
// pull attempt in this process is done, or pulling is off.
func (e *Ensurer) standInFinal() bool {
	if e.Pull == nil {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.retried
}

// noteUsable records, the first time, that a usable image was found
// without Berth pulling or building it, and passes err through.
func (e *Ensurer) noteUsable(p presence, err error) error {
	if err != nil {
		return err
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if e.state.Source == "" || e.state.Source == Unchecked {
		e.state = State{Image: e.Image, Source: Present}
		if p == standIn {
			// Built by an earlier run, whose pull failed.
			e.state.Source = Built
		}
	}
	return nil
}

func (e *Ensurer) setState(src Source, pullErr string) {
	e.stateMu.Lock()
	e.state = State{Image: e.Image, Source: src, PullError: pullErr}
	e.stateMu.Unlock()
}

// State returns what the Ensurer last found or did.
func (e *Ensurer) State() State {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if e.state.Source == "" {
		return State{Image: e.Image, Source: Unchecked}
	}
	return e.state
}

// presence says whether a usable sandbox image exists: any image under
// the configured name (Berth's pause program under another name is a
// stand-in), or for Berth's own image one whose single layer is exactly
// the current pause program.
func (e *Ensurer) presence(ctx context.Context) (presence, error) {
	layers, err := e.Docker.ImageLayers(ctx, e.Image)
	if errors.Is(err, errdefs.ErrNotFound) {
		return absent, nil
	}
	if err != nil {
		return absent, fmt.Errorf("sandbox image %s: %w", e.Image, err)
	}
	want, err := LayerDigest()
	if err != nil {
		if e.Builtin {
			return absent, err
		}
		return ready, nil // no pause program for this architecture: nothing to compare
	}
	ours := len(layers) == 1 && layers[0] == want
	switch {
	case e.Builtin && ours, !e.Builtin && !ours:
		return ready, nil
	case e.Builtin:
		return absent, nil
	default:
		return standIn, nil
	}
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
