package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ReadFile reads a regular file of at most max bytes from a container's
// filesystem (the container need not run). A missing file wraps
// errdefs.ErrNotFound.
func (c *Client) ReadFile(ctx context.Context, id, path string, max int64) ([]byte, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, Classify(err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s in container %s: %w", path, id, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > max {
			return nil, fmt.Errorf("%s in container %s is larger than %d bytes", path, id, max)
		}
		return io.ReadAll(io.LimitReader(tr, max))
	}
}

// StatPath describes a path in a container's filesystem, with its volumes
// and mounts in place (the container need not run). A missing path wraps
// errdefs.ErrNotFound.
func (c *Client) StatPath(ctx context.Context, id, path string) (container.PathStat, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: path})
	if err != nil {
		return container.PathStat{}, Classify(err)
	}
	return res.Stat, nil
}
