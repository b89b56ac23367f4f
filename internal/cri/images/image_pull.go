package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// PullImage pulls an image by tag or digest with the credentials given and
// returns its id, the id ImageStatus, ListImages and ContainerStatus report.
// Identical pulls (same reference, same credentials) in flight at once
// share one Docker pull. A pull is cancelled when every caller waiting for
// it has gone, or when Docker reports no progress for
// --image-pull-progress-deadline.
func (s *Service) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	spec := req.GetImage()
	ref, err := dockerspec.ParseImageRef(spec.GetImage())
	if err != nil {
		return nil, errdefs.InvalidArgument("image.image", "%v", err)
	}
	if ref.Named == nil {
		return nil, errdefs.InvalidArgument("image.image", "%q is an image id: pull by name with a tag or digest", spec.GetImage())
	}
	if err := s.checkRuntimeHandler(spec.GetRuntimeHandler()); err != nil {
		return nil, err
	}
	auth, err := dockerspec.RegistryAuth(req.GetAuth())
	if err != nil {
		return nil, err
	}

	id, err := s.sharedPull(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

// sharedPull pulls ref with auth (an X-Registry-Auth value), joining an
// identical pull in flight, and returns the image id.
func (s *Service) sharedPull(ctx context.Context, ref dockerspec.ImageRef, auth string) (string, error) {
	// Credentials are part of the key: a caller never gets an image
	// through a pull made with someone else's credentials.
	sum := sha256.Sum256([]byte(auth))
	key := ref.String() + "\x00" + hex.EncodeToString(sum[:])
	id, _, err := s.pulls.Do(ctx, key, func(ctx context.Context) (string, error) {
		return s.pull(ctx, ref, auth)
	})
	return id, err
}

// pull runs one Docker pull and returns the pulled image's id.
func (s *Service) pull(ctx context.Context, ref dockerspec.ImageRef, auth string) (string, error) {
	log := logging.FromContext(ctx)
	start := time.Now()
	log.Debug("pulling image", "image", ref.String(), "authenticated", auth != "")
	err := s.docker.PullImage(ctx, ref.Docker(), docker.PullOptions{
		RegistryAuth:     auth,
		ProgressDeadline: s.progressDeadline,
		Registry:         ref.Registry(),
	})
	if err != nil {
		return "", err
	}
	img, err := s.docker.InspectImage(ctx, ref.Docker())
	if err != nil {
		return "", fmt.Errorf("pulled %s but Docker cannot show it: %w", ref.String(), err)
	}
	id := dockerspec.ImageID(img.ID)
	s.users.put(id, dockerspec.ImageConfigUser(img))
	log.Info("pulled image", "image", ref.String(), "id", id, "took", time.Since(start).Round(time.Millisecond))
	return id, nil
}

// checkRuntimeHandler rejects a runtime handler Docker does not have, as
// the CRI asks; "" is Docker's default runtime.
func (s *Service) checkRuntimeHandler(handler string) error {
	if handler == "" {
		return nil
	}
	h := s.daemon.Health()
	if slices.Contains(h.Daemon.Runtimes, handler) {
		return nil
	}
	return errdefs.InvalidArgument("image.runtime_handler", "Docker has no runtime %q (it has %v)", handler, h.Daemon.Runtimes)
}
