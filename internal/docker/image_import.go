package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ImageID returns the id of the image ref names, or an error wrapping
// errdefs.ErrNotFound if Docker has no such image.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageInspect(ctx, ref)
	if err != nil {
		return "", Classify(err)
	}
	return res.ID, nil
}

// ImageLayers returns the diff ids of the layers of the image ref names,
// or an error wrapping errdefs.ErrNotFound.
func (c *Client) ImageLayers(ctx context.Context, ref string) ([]string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageInspect(ctx, ref)
	if err != nil {
		return nil, Classify(err)
	}
	return res.RootFS.Layers, nil
}

// ImportImage creates image ref from a root filesystem tar stream, applying
// Dockerfile-style changes (ENTRYPOINT, LABEL, …).
func (c *Client) ImportImage(ctx context.Context, rootfs io.Reader, ref string, changes []string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return Classify(err)
	}
	defer res.Close()
	return drainJSONMessages(res)
}

// drainJSONMessages reads a Docker progress stream to its end and returns
// the first error message in it, which Docker reports inside the stream
// rather than as an HTTP status.
func drainJSONMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading Docker's progress stream: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("%w: %s", errdefs.ErrInternal, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("%w: %s", errdefs.ErrInternal, m.Error)
		}
	}
}
