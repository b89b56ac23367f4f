// Package images serves the CRI ImageService on Docker: pulls (shared
// among identical callers), the image list, status and removal, pinned
// images, and the image filesystem's usage with the containers' writable
// layers measured in the background (LayerSampler). It also pulls the
// sandbox image for the runtime with the node's own credentials.
package images

import (
	"context"
	"strings"
	"time"

	"github.com/moby/moby/api/types/image"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/flight"
	"github.com/berth-cri/berth/internal/logging"
)

// Docker is the part of Docker that stores and pulls images.
type Docker interface {
	// PullImage pulls a familiar reference with a tag or digest; it is
	// long-running and cancelled with ctx.
	PullImage(ctx context.Context, ref string, opts docker.PullOptions) error
	// InspectImage looks an image up by reference, id or id prefix.
	InspectImage(ctx context.Context, ref string) (image.InspectResponse, error)
	// ListImages lists the top-level images.
	ListImages(ctx context.Context) ([]image.Summary, error)
	// ImageHistory returns an image's layers, for verbose ImageStatus.
	ImageHistory(ctx context.Context, id string) ([]image.HistoryResponseItem, error)
	// RemoveImage removes an image and every reference to it.
	RemoveImage(ctx context.Context, id string) error
	// ContainersUsingImage names the containers created from an image.
	ContainersUsingImage(ctx context.Context, id string) ([]string, error)
}

// Daemon reports the Docker daemon as last seen: its image store, its
// runtimes and where it keeps images.
type Daemon interface {
	Health() docker.Health
}

// Deps are what the ImageService is built from.
type Deps struct {
	Config config.Config
	Daemon Daemon
	Docker Docker
	// Layers measures the containers' writable layers for ImageFsInfo;
	// nil reports the image filesystem only.
	Layers *LayerSampler
}

// Service serves runtime.v1 ImageService. Nothing in it must survive a
// restart: it is derived from Docker or configuration.
type Service struct {
	runtimeapi.UnimplementedImageServiceServer

	daemon Daemon
	docker Docker
	// progressDeadline is --image-pull-progress-deadline.
	progressDeadline time.Duration
	pinned           dockerspec.PinnedSet
	// pulls shares one Docker pull among identical concurrent PullImage
	// calls (same reference, same credentials); the value is the image id.
	pulls flight.Group[string]
	// removes shares one Docker removal among concurrent RemoveImage
	// calls for the same image id.
	removes flight.Group[struct{}]
	users   userCache
	layers  *LayerSampler
}

var _ runtimeapi.ImageServiceServer = (*Service)(nil)

// New returns the service. It does no I/O.
func New(d Deps) *Service {
	// config.Validate has checked every entry, so errors cannot happen
	// here; a set without the bad entries would be the answer anyway.
	pinned, _ := dockerspec.NewPinnedSet(append([]string{d.Config.PodInfraContainerImage}, d.Config.PinnedImages...)...)
	s := &Service{
		daemon:           d.Daemon,
		docker:           d.Docker,
		progressDeadline: d.Config.ImagePullProgressDeadline,
		pinned:           pinned,
		layers:           d.Layers,
	}
	s.pulls.OnJoin = func(ctx context.Context, key string) {
		image, _, _ := strings.Cut(key, "\x00")
		logging.FromContext(ctx).Debug("joined an identical pull in flight", "image", image)
	}
	return s
}

// imageStore returns the image store of the daemon as last seen: it decides
// how Docker's image names read (see dockerspec.NewImageRefs).
func (s *Service) imageStore() dockerspec.ImageStore {
	if s.daemon.Health().Daemon.ContainerdImageStore {
		return dockerspec.ContainerdImageStore
	}
	return dockerspec.ClassicImageStore
}
