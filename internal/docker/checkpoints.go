package docker

import (
	"context"
	"io"
	"path/filepath"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// The calls below can move a lot of data (a container's changed files, a
// process's memory): they are bounded by the caller's context, not by the
// request timeout.

// CheckpointContainer dumps a running container's processes with CRIU into
// dir/name (Docker's checkpoint API, experimental daemons only) and leaves
// the container running.
func (c *Client) CheckpointContainer(ctx context.Context, id, dir, name string) error {
	_, err := c.api().CheckpointCreate(ctx, id, client.CheckpointCreateOptions{CheckpointID: name, CheckpointDir: dir, Exit: false})
	return Classify(err)
}

// StartContainerFromCheckpoint starts a created container by restoring the
// processes of its checkpoint name instead of running its command. Docker
// restores only from the container's own checkpoint directory
// (CheckpointDir), not from one the client names.
func (c *Client) StartContainerFromCheckpoint(ctx context.Context, id, name string) error {
	_, err := c.api().ContainerStart(ctx, id, client.ContainerStartOptions{CheckpointID: name})
	return Classify(err)
}

// CheckpointDir is where Docker keeps a container's checkpoints (each in a
// directory of its name): <root>/containers/<id>/checkpoints.
func (d DaemonInfo) CheckpointDir(id string) string {
	return filepath.Join(d.RootDir, "containers", id, "checkpoints")
}

// ContainerChanges lists the paths of a container's filesystem that differ
// from its image (its writable layer; volumes and mounts excluded).
func (c *Client) ContainerChanges(ctx context.Context, id string) ([]container.FilesystemChange, error) {
	res, err := c.api().ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return nil, Classify(err)
	}
	return res.Changes, nil
}

// CopyFromContainer returns a tar stream of path in the container's
// filesystem (a directory with everything below it), named from path's
// last element. The caller closes it.
func (c *Client) CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, error) {
	res, err := c.api().CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, Classify(err)
	}
	return res.Content, nil
}

// CopyToContainer extracts a tar stream into dir in the container's
// filesystem (the container need not run), keeping the owners the tar
// names.
func (c *Client) CopyToContainer(ctx context.Context, id, dir string, content io.Reader) error {
	_, err := c.api().CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: content})
	return Classify(err)
}

// PauseContainer freezes every process of a running container.
func (c *Client) PauseContainer(ctx context.Context, id string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerPause(ctx, id, client.ContainerPauseOptions{})
	return Classify(err)
}

// UnpauseContainer thaws a paused container.
func (c *Client) UnpauseContainer(ctx context.Context, id string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	return Classify(err)
}
