package cri

import (
	"sync"

	"github.com/berth-cri/berth/internal/dockerspec"
)

// imageGroupCache remembers the /etc/passwd and /etc/group of images, by
// image id, up to a number of images.
type imageGroupCache struct {
	mu    sync.Mutex // guards files and order
	max   int
	files map[string][2][]byte
	order []string
}

func newImageGroupCache(max int) *imageGroupCache {
	return &imageGroupCache{max: max, files: map[string][2][]byte{}}
}

func (c *imageGroupCache) has(imageID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.files[imageID]
	return ok
}

// get returns the groups the image gives user, if the image is known.
func (c *imageGroupCache) get(imageID, user string) ([]int64, bool) {
	c.mu.Lock()
	f, ok := c.files[imageID]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return dockerspec.ImageGroups(f[0], f[1], user), true
}

func (c *imageGroupCache) put(imageID string, passwd, group []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[imageID]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.files, c.order[0])
		c.order = c.order[1:]
	}
	c.files[imageID] = [2][]byte{passwd, group}
	c.order = append(c.order, imageID)
}
