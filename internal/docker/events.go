package docker

import (
	"context"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// ContainerEvents streams Docker's container events that happened at or
// after since (zero: from now) and carry all the given labels. The stream
// ends, with an error on errs, when ctx ends or the connection breaks; the
// caller reconnects.
func (c *Client) ContainerEvents(ctx context.Context, since time.Time, labels ...string) (<-chan events.Message, <-chan error) {
	f := client.Filters{}.Add("type", string(events.ContainerEventType))
	for _, l := range labels {
		f = f.Add("label", l)
	}
	opts := client.EventsListOptions{Filters: f}
	if !since.IsZero() {
		opts.Since = strconv.FormatFloat(float64(since.UnixNano())/1e9, 'f', 9, 64)
	}
	res := c.api().Events(ctx, opts)
	return res.Messages, res.Err
}
