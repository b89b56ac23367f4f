package images

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/hostfs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/stats"
)

// ImageFsInfo reports the filesystem Docker keeps images on: the mount that
// holds Docker's storage-driver directory (classic store) or containerd's
// snapshotter directory (containerd image store), with its bytes and inodes
// in use as df reports them (a statfs, not a walk of every layer). Its
// container filesystem is the same mount, with the bytes and inodes of the
// containers' writable layers (what `docker system df` counts for
// containers), from a sample refreshed in the background.
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	h := s.daemon.Health()
	if !h.Ready {
		return nil, fmt.Errorf("%w: %s", errdefs.ErrUnavailable, h.Reason)
	}
	dir := imageStorageDir(h.Daemon)
	fsu, err := stats.Filesystem(dir)
	if err != nil {
		// Docker's data root cannot be read from here (another mount
		// namespace, gone): a server-side failure, not the caller's.
		return nil, fmt.Errorf("%w: image filesystem: %w", errdefs.ErrInternal, err)
	}
	resp := &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems: []*runtimeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: fsu.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: fsu.UsedBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: fsu.InodesUsed},
		}},
	}
	if s.layers == nil {
		return resp, nil
	}
	layers, err := s.layers.Usage(ctx)
	if err != nil {
		// The image filesystem is still worth reporting; kubelet treats
		// a missing container filesystem as "same as the image one".
		logging.FromContext(ctx).Warn("no sample of the containers' writable layers yet", "error", err)
		return resp, nil
	}
	containerFs := &runtimeapi.FilesystemUsage{
		Timestamp: layers.at.UnixNano(),
		FsId:      &runtimeapi.FilesystemIdentifier{Mountpoint: fsu.Mountpoint},
		UsedBytes: &runtimeapi.UInt64Value{Value: layers.bytes},
	}
	if layers.inodesKnown {
		containerFs.InodesUsed = &runtimeapi.UInt64Value{Value: layers.inodes}
	}
	resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{containerFs}
	return resp, nil
}

// imageStorageDir returns the first of the daemon's possible image storage
// directories that exists; Docker's root directory when none does.
func imageStorageDir(d docker.DaemonInfo) string {
	dirs := d.ImageStorageDirs()
	for _, dir := range dirs[:len(dirs)-1] {
		if hostfs.IsDir(dir) {
			return dir
		}
	}
	return dirs[len(dirs)-1]
}
