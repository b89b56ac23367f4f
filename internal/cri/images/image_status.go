package images

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
)

// ImageStatus reports the image a reference (tag, digest, id) names, or no
// image (and no error) when Docker has none. verbose adds the image's
// config, root filesystem and history as JSON under info["info"].
func (s *Service) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref, err := dockerspec.DockerLookupRef(req.GetImage().GetImage())
	if err != nil {
		return nil, errdefs.InvalidArgument("image.image", "%v", err)
	}
	img, err := s.docker.InspectImage(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	store := s.imageStore()
	resp := &runtimeapi.ImageStatusResponse{Image: dockerspec.ImageFromInspect(store, img, s.pinned)}
	s.users.put(resp.Image.Id, dockerspec.ImageConfigUser(img))
	if req.GetVerbose() {
		history, err := s.docker.ImageHistory(ctx, img.ID)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return nil, err
		}
		if resp.Info, err = dockerspec.ImageVerboseInfo(store, img, history); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
