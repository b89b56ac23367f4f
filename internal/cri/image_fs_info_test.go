package cri

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestImageFsInfoUnreadableDockerRoot: a Docker data root Berth cannot
// statfs is a server-side failure (Internal), never a bare error that
// reaches kubelet as Unknown.
func TestImageFsInfoUnreadableDockerRoot(t *testing.T) {
	dir := t.TempDir()
	s := fuzzService(t, dir)
	s.daemon = downBackend{dockerRoot: filepath.Join(dir, "no-such-dir")}
	_, err := s.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{})
	if code := errdefs.Code(err); code != codes.Internal {
		t.Fatalf("ImageFsInfo with Docker's root unreadable: code %v (%v), want Internal", code, err)
	}
}
