package cri

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cri/chunk"
	"github.com/berth-cri/berth/internal/store"
)

// ListPodSandbox answers from Berth's index, without a Docker call.
func (s *Service) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listSandboxes(req.GetFilter())}, nil
}

// StreamPodSandboxes is ListPodSandbox in chunks, for nodes whose list
// would not fit in one message.
func (s *Service) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	items := s.listSandboxes(req.GetFilter())
	return chunk.Send(items, chunk.Size, func(c []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: c})
	})
}

func (s *Service) listSandboxes(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	records := s.store.Sandboxes(func(sb *store.Sandbox) bool {
		if f == nil {
			return true
		}
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			return false
		}
		if st := f.GetState(); st != nil && sb.State() != st.GetState() {
			return false
		}
		return store.MatchLabels(sb.Labels, f.GetLabelSelector())
	})
	s.caches.conv.prune(s.store)
	out := make([]*runtimeapi.PodSandbox, 0, len(records))
	for _, sb := range records {
		out = append(out, s.caches.conv.sandbox(sb))
	}
	return out
}
