package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/chunk"
	"github.com/berth-cri/berth/internal/store"
)

// ListContainers answers from Berth's index, without a Docker call.
func (s *Service) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(req.GetFilter())}, nil
}

// StreamContainers is ListContainers in chunks.
func (s *Service) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	items := s.listContainers(req.GetFilter())
	return chunk.Send(items, chunk.Size, func(c []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: c})
	})
}

func (s *Service) listContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	records := s.store.Containers(func(c *store.Container) bool {
		if f == nil {
			return true
		}
		if st := f.GetState(); st != nil && c.State != st.GetState() {
			return false
		}
		return store.ContainerMatch(c, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	})
	s.caches.conv.prune(s.store)
	out := make([]*runtimeapi.Container, 0, len(records))
	for _, c := range records {
		out = append(out, s.caches.conv.container(c))
	}
	return out
}
