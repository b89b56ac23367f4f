package images

import (
	"context"
	"errors"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
)

// RemoveImage removes the image a reference (tag, digest, id) names, with
// every tag and digest it has, as the CRI asks. An absent image is success;
// an image a container (in any state) was created from is refused with
// FailedPrecondition naming the containers. Concurrent removals of one image
// share one Docker call and all succeed.
func (s *Service) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	spec := req.GetImage().GetImage()
	ref, err := dockerspec.DockerLookupRef(spec)
	if err != nil {
		return nil, errdefs.InvalidArgument("image.image", "%v", err)
	}
	img, err := s.docker.InspectImage(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	id := dockerspec.ImageID(img.ID)
	_, _, err = s.removes.Do(ctx, id, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.removeImage(ctx, spec, id)
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (s *Service) removeImage(ctx context.Context, spec, id string) error {
	// Docker removes an image a stopped container uses when forced (and
	// forcing is what removes every tag at once), so ask first.
	users, err := s.docker.ContainersUsingImage(ctx, id)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("image %s (%s) is in use by container(s) %s; remove them first: %w",
			spec, id, strings.Join(users, ", "), errdefs.ErrFailedPrecondition)
	}
	err = s.docker.RemoveImage(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("removing image %s (%s): %w", spec, id, err)
	}
	s.users.forget(id)
	logging.FromContext(ctx).Info("removed image", "image", spec, "id", id)
	return nil
}
