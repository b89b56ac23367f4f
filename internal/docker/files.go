package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

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
