package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/stats"
)

// ImageFsInfo reports the filesystem Docker keeps images on: the mount that
// holds Docker's storage-driver directory, with its bytes and inodes in use
// as df reports them (a statfs, not a walk of every layer).
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	h := s.daemon.Health()
	if !h.Ready {
		return nil, fmt.Errorf("%w: %s", errdefs.ErrUnavailable, h.Reason)
	}
	dir := h.Daemon.RootDir
	if h.Daemon.StorageDriver != "" {
		if d := filepath.Join(dir, h.Daemon.StorageDriver); dirExists(d) {
			dir = d
		}
	}
	fs, err := stats.Filesystem(dir)
	if err != nil {
		return nil, fmt.Errorf("image filesystem: %w", err)
	}
	usage := &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: fs.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: fs.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: fs.InodesUsed},
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{usage},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{usage},
	}, nil
}
