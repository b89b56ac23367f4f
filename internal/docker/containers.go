package docker

import (
	"context"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// CreateContainer creates a container named name and returns its id.
func (c *Client) CreateContainer(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig) (string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if err != nil {
		return "", Classify(err)
	}
	return res.ID, nil
}

// StartContainer starts a created (or stopped) container.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerStart(ctx, id, client.ContainerStartOptions{})
	return Classify(err)
}

// StopContainer sends signal (the container's stop signal when empty), waits
// up to grace for the container to exit, then kills it. The call is bounded
// by grace plus the request timeout, not the request timeout alone.
func (c *Client) StopContainer(ctx context.Context, id string, grace time.Duration, signal string) error {
	ctx, cancel := context.WithTimeout(ctx, grace+c.timeout)
	defer cancel()
	secs := int(grace.Round(time.Second) / time.Second)
	_, err := c.api().ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs, Signal: signal})
	return Classify(err)
}

// KillContainer sends signal (SIGKILL when empty) to the container's process.
func (c *Client) KillContainer(ctx context.Context, id, signal string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal})
	return Classify(err)
}

// RemoveContainer removes a container, killing it first if it runs, with its
// anonymous volumes.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	return Classify(err)
}

// InspectContainer returns Docker's full view of one container.
func (c *Client) InspectContainer(ctx context.Context, id string) (container.InspectResponse, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, Classify(err)
	}
	return res.Container, nil
}

// ListContainers lists every container (running or not) carrying all the
// given labels ("key" or "key=value").
func (c *Client) ListContainers(ctx context.Context, labels ...string) ([]container.Summary, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	f := client.Filters{}
	for _, l := range labels {
		f = f.Add("label", l)
	}
	res, err := c.api().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, Classify(err)
	}
	return res.Items, nil
}

// UpdateContainerResources changes a container's cgroup limits in place.
func (c *Client) UpdateContainerResources(ctx context.Context, id string, r *container.Resources) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: r})
	return Classify(err)
}
