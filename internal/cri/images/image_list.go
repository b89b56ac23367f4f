package images

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/chunk"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
)

// streamImagesBatch is how many images one StreamImages message carries:
// a few hundred bytes each, far below the 16 MiB message limit.
const streamImagesBatch = 500

// ListImages lists Docker's images, optionally those matching the filter's
// image reference (a name selects every tag of it; a name with a tag or
// digest, or an id, selects one image).
func (s *Service) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	images, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: images}, nil
}

// StreamImages is ListImages in batches, for nodes with more images than
// one message holds.
func (s *Service) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	images, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return chunk.Send(images, streamImagesBatch, func(c []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: c})
	})
}

// listImages is one Docker image list plus cached config users: the cost
// of ListImages stays that of Docker's list however many images there are.
func (s *Service) listImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	f, err := dockerspec.NewImageFilter(filter.GetImage().GetImage())
	if err != nil {
		return nil, errdefs.InvalidArgument("filter.image.image", "%v", err)
	}
	summaries, err := s.docker.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	store := s.imageStore()
	ids := make([]string, 0, len(summaries))
	selected := summaries[:0]
	for _, sm := range summaries {
		refs := dockerspec.SummaryRefs(store, sm)
		if f.Match(refs) {
			selected = append(selected, sm)
			ids = append(ids, refs.ID)
		}
	}
	users, err := s.users.get(ctx, s.docker, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(selected))
	for _, sm := range selected {
		out = append(out, dockerspec.ImageFromSummary(store, sm, users[dockerspec.ImageID(sm.ID)], s.pinned))
	}
	return out, nil
}
