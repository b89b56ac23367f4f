package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
)

// PullOptions configure PullImage.
type PullOptions struct {
	// RegistryAuth is the X-Registry-Auth header value; empty pulls
	// anonymously.
	RegistryAuth string
	// ProgressDeadline cancels the pull when Docker reports no progress
	// for this long; 0 never does.
	ProgressDeadline time.Duration
	// Registry names the registry in error messages (e.g. 127.0.0.1:5000).
	Registry string
}

// errPullStalled is the cancellation cause of a pull that made no progress.
var errPullStalled = errors.New("pull stalled")

// PullImage pulls ref (a familiar reference with a tag or digest) and
// returns when Docker has it. It is long-running: no request timeout
// applies. Cancelling ctx cancels the pull in Docker (Docker stops a pull
// whose client went away). The pull is also cancelled when Docker's
// progress stream shows no progress for opts.ProgressDeadline; a large image
// that keeps downloading is never cut off.
func (c *Client) PullImage(ctx context.Context, ref string, opts PullOptions) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	progress := newPullProgress()
	if opts.ProgressDeadline > 0 {
		watchdog := time.AfterFunc(opts.ProgressDeadline, func() {
			defer panics.Recover(ctx, panics.Docker, nil)
			cancel(errPullStalled)
		})
		defer watchdog.Stop()
		progress.onAdvance = func() { watchdog.Reset(opts.ProgressDeadline) }
	}
	pullErr := func(err error) error {
		if context.Cause(ctx) == errPullStalled {
			return fmt.Errorf("pulling %s: no progress for %v (last: %s); the pull was cancelled: %w",
				ref, opts.ProgressDeadline, progress.last(), errdefs.ErrDeadlineExceeded)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("pulling %s: %w", ref, ctxErr)
		}
		return classifyPullError(ref, opts.Registry, err)
	}

	resp, err := c.api().ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: opts.RegistryAuth})
	if err != nil {
		return pullErr(err)
	}
	defer resp.Close()
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return pullErr(err)
		}
		if msg.Error != nil {
			return pullErr(pullStreamError(msg.Error))
		}
		progress.observe(msg)
	}
	if ctx.Err() != nil {
		return pullErr(ctx.Err())
	}
	return nil
}

// pullProgress tells progress in Docker's pull stream from chatter: a layer
// reaching a new phase (Pulling fs layer, Downloading, Download complete,
// Extracting, Pull complete) or downloading or extracting more bytes is
// progress; "Waiting", retry countdowns and repeats of the same figures
// (the containerd image store repeats them on a timer) are not.
type pullProgress struct {
	mu        sync.Mutex       // guards seen and lastMsg
	seen      map[string]int64 // layer id + phase → most bytes seen
	lastMsg   string
	onAdvance func()
}

func newPullProgress() *pullProgress {
	return &pullProgress{seen: map[string]int64{}}
}

// observe records msg and reports whether it shows progress.
func (p *pullProgress) observe(msg jsonstream.Message) bool {
	if msg.Status == "" || msg.Status == "Waiting" || strings.HasPrefix(msg.Status, "Retrying in") {
		return false
	}
	var current int64
	if msg.Progress != nil {
		current = msg.Progress.Current
	}
	key := msg.ID + "\x00" + msg.Status
	p.mu.Lock()
	prev, seen := p.seen[key]
	advanced := !seen || current > prev
	if advanced {
		p.seen[key] = current
		p.lastMsg = strings.TrimSpace(msg.ID + " " + msg.Status)
		if msg.Progress != nil && msg.Progress.Total > 0 {
			p.lastMsg += fmt.Sprintf(" %d/%d bytes", current, msg.Progress.Total)
		}
	}
	p.mu.Unlock()
	if advanced && p.onAdvance != nil {
		p.onAdvance()
	}
	return advanced
}

func (p *pullProgress) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastMsg == "" {
		return "waiting for the registry to answer"
	}
	return p.lastMsg
}

// pullStreamError turns an error reported inside the pull stream into an
// error the classifiers understand.
func pullStreamError(e *jsonstream.Error) error {
	switch e.Code {
	case 401:
		return cerrdefs.ErrUnauthenticated.WithMessage(e.Message)
	case 404:
		return cerrdefs.ErrNotFound.WithMessage(e.Message)
	}
	return errors.New(e.Message)
}

// Registry error messages, as Docker 20.10 and current Docker word them.
var (
	authFailures = []string{
		"unauthorized", "authentication required", "no basic auth credentials",
		"incorrect username or password", "invalid username/password", "authorization failed",
		"unauthenticated",
	}
	accessDenied = []string{"pull access denied", "requested access to the resource is denied"}
	unreachable  = []string{
		"connection refused", "no such host", "i/o timeout", "network is unreachable",
		"no route to host", "connection reset by peer", "tls handshake timeout",
		"server misbehaving", "dial tcp", "server gave http response to https client",
		"unexpected eof", "context deadline exceeded (client.timeout",
	}
)

// classifyPullError maps a failed pull to a sentinel with a message that
// says what went wrong in the user's terms: authentication failed
// (Unauthenticated), no such image (NotFound), or the registry cannot be
// reached (Unavailable, naming the registry). A message for an unreachable
// registry starts with "RegistryUnavailable", the marker kubelet looks for.
func classifyPullError(ref, registryHost string, err error) error {
	if err == nil {
		return nil
	}
	if client.IsErrConnectionFailed(err) {
		return Classify(err)
	}
	msg := errorMessage(err)
	lower := strings.ToLower(msg)
	where := registryHost
	if where == "" {
		where = "the registry"
	}
	switch {
	case cerrdefs.IsUnauthorized(err) || containsAny(lower, authFailures):
		return fmt.Errorf("pulling %s: authentication to registry %s failed: %s: %w", ref, where, msg, errdefs.ErrUnauthenticated)
	case cerrdefs.IsNotFound(err) && containsAny(lower, accessDenied):
		// Registries (Docker Hub first) answer "denied" both for a
		// repository that does not exist and for one the credentials do
		// not grant: say both.
		return fmt.Errorf("pulling %s: image not found, or access to it denied (the registry does not say which; check the name and the credentials): %s: %w", ref, msg, errdefs.ErrNotFound)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("pulling %s: image not found: %s: %w", ref, msg, errdefs.ErrNotFound)
	case containsAny(lower, unreachable):
		return fmt.Errorf("RegistryUnavailable: pulling %s: registry %s is unreachable: %s: %w", ref, where, msg, errdefs.ErrUnavailable)
	}
	if c := Classify(err); c != err {
		return fmt.Errorf("pulling %s: %w", ref, c)
	}
	return fmt.Errorf("pulling %s: %s: %w", ref, msg, errdefs.ErrInternal)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// InspectImage returns Docker's record of the image ref names (a reference,
// an id or an id prefix). A missing image is ErrNotFound.
func (c *Client) InspectImage(ctx context.Context, ref string) (image.InspectResponse, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageInspect(ctx, ref)
	if err != nil {
		return image.InspectResponse{}, Classify(err)
	}
	return res.InspectResponse, nil
}

// ListImages returns every top-level image (intermediate build layers are
// not images to CRI), untagged ones included.
func (c *Client) ListImages(ctx context.Context) ([]image.Summary, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, Classify(err)
	}
	return res.Items, nil
}

// ImageHistory returns the image's layers, newest first.
func (c *Client) ImageHistory(ctx context.Context, id string) ([]image.HistoryResponseItem, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageHistory(ctx, id)
	if err != nil {
		return nil, Classify(err)
	}
	return res.Items, nil
}

// RemoveImage removes the image with this id and every tag and digest
// reference to it. A missing image is ErrNotFound; an image a container
// still uses is ErrFailedPrecondition.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	// force removes every reference at once (without it Docker refuses an
	// image tagged in several repositories); Docker still refuses an image
	// a running container uses.
	_, err := c.api().ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err == nil {
		return nil
	}
	if cerrdefs.IsConflict(err) {
		return fmt.Errorf("%s: %w", errorMessage(err), errdefs.ErrFailedPrecondition)
	}
	return Classify(err)
}

// ContainersUsingImage returns the names of the containers, in any state,
// created from the image with this id.
func (c *Client) ContainersUsingImage(ctx context.Context, id string) ([]string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("ancestor", id),
	})
	if err != nil {
		return nil, Classify(err)
	}
	var names []string
	for _, ctr := range res.Items {
		// The ancestor filter also matches containers of child images.
		if ctr.ImageID != id {
			continue
		}
		name := ctr.ID
		if len(ctr.Names) > 0 {
			name = strings.TrimPrefix(ctr.Names[0], "/")
		}
		names = append(names, name)
	}
	return names, nil
}

// LayerContainer is a container as the writable-layer usage sampler sees it.
type LayerContainer struct {
	ID      string
	Running bool
}

// ListLayerContainers lists every container (one call, no sizes).
func (c *Client) ListLayerContainers(ctx context.Context) ([]LayerContainer, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]LayerContainer, 0, len(res.Items))
	for _, ctr := range res.Items {
		out = append(out, LayerContainer{ID: ctr.ID, Running: ctr.State == container.StateRunning || ctr.State == container.StatePaused || ctr.State == container.StateRestarting})
	}
	return out, nil
}

// WritableLayerDir returns the directory holding the container's writable
// layer (overlay2's upper directory), or "" when Docker does not say (the
// containerd image store's snapshotters).
func (c *Client) WritableLayerDir(ctx context.Context, id string) (string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", Classify(err)
	}
	if gd := res.Container.GraphDriver; gd != nil {
		return gd.Data["UpperDir"], nil
	}
	return "", nil
}

// WritableLayerSize asks Docker for the size of the container's writable
// layer. Docker walks the layer to answer: call it only for containers
// whose layer directory is unknown.
func (c *Client) WritableLayerSize(ctx context.Context, id string) (int64, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: true})
	if err != nil {
		return 0, Classify(err)
	}
	if res.Container.SizeRw == nil {
		return 0, nil
	}
	return *res.Container.SizeRw, nil
}
