package images

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
)

// daemonAt is a ready Docker whose data root is root.
type daemonAt struct{ root string }

func (d daemonAt) Health() docker.Health {
	return docker.Health{Ready: true, Daemon: docker.DaemonInfo{
		Version: "20.10.24", APIVersion: "1.41", RootDir: d.root, StorageDriver: "overlay2",
	}}
}

// TestImageFsInfoUnreadableDockerRoot: a Docker data root Berth cannot
// statfs is a server-side failure (Internal), never a bare error that
// reaches kubelet as Unknown.
func TestImageFsInfoUnreadableDockerRoot(t *testing.T) {
	dir := t.TempDir()
	s := New(Deps{Config: config.Default(), Daemon: daemonAt{root: filepath.Join(dir, "no-such-dir")}})
	_, err := s.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{})
	if code := errdefs.Code(err); code != codes.Internal {
		t.Fatalf("ImageFsInfo with Docker's root unreadable: code %v (%v), want Internal", code, err)
	}
}
