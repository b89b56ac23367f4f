package images

import (
	"context"
	"errors"
	"sync"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
)

// userCache remembers each image's config User for ListImages, which
// Docker's image list does not carry. An image id names immutable content
// (a config digest, or a manifest or index digest that fixes the config), so
// an entry never goes stale; entries for images gone from Docker are
// dropped on the next list.
type userCache struct {
	mu    sync.Mutex        // guards users
	users map[string]string // image id → config User
}

// userLookupParallelism bounds the inspects ListImages issues for images it
// has not seen yet (after a start-up, or when many were pulled at once).
const userLookupParallelism = 4

// get returns the User of every image in ids, inspecting those it does not
// know yet, and forgets images not in ids. An image that vanishes meanwhile
// gets "".
func (c *userCache) get(ctx context.Context, images Docker, ids []string) (map[string]string, error) {
	c.mu.Lock()
	if c.users == nil {
		c.users = map[string]string{}
	}
	out := make(map[string]string, len(ids))
	var missing []string
	for _, id := range ids {
		if u, ok := c.users[id]; ok {
			out[id] = u
		} else {
			missing = append(missing, id)
		}
	}
	if len(c.users) > len(ids) {
		for id := range c.users {
			if _, ok := out[id]; !ok {
				delete(c.users, id)
			}
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}

	type result struct {
		id, user string
		err      error
	}
	results := make(chan result, len(missing))
	sem := make(chan struct{}, userLookupParallelism)
	for _, id := range missing {
		var user string
		panics.GoThen(ctx, panics.ImageLookup, func() error {
			sem <- struct{}{}
			defer func() { <-sem }()
			img, err := images.InspectImage(ctx, id)
			user = dockerspec.ImageConfigUser(img)
			return err
		}, func(err error) { results <- result{id: id, user: user, err: err} })
	}
	found := make(map[string]string, len(missing))
	var firstErr error
	for range missing {
		r := <-results
		switch {
		case r.err == nil:
			found[r.id] = r.user
		case errors.Is(r.err, errdefs.ErrNotFound):
			// Removed since the list: the caller's list is already stale.
		case firstErr == nil:
			firstErr = r.err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, user := range found {
		c.users[id] = user
		out[id] = user
	}
	return out, firstErr
}

func (c *userCache) put(id, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[string]string{}
	}
	c.users[id] = user
}

func (c *userCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.users, id)
}
