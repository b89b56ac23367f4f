package cri

import (
	"sync"
)

// imageGroupCache remembers the /etc/passwd and /etc/group of images, by
// image id, up to a number of images.
type imageGroupCache struct {
	mu    sync.Mutex // guards byID and order
	max   int
	byID  map[string][2][]byte
	order []string
}

func newImageGroupCache(max int) *imageGroupCache {
	return &imageGroupCache{max: max, byID: map[string][2][]byte{}}
}

// files returns the image's /etc/passwd and /etc/group, if the image is
// known.
func (c *imageGroupCache) files(imageID string) (passwd, group []byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.byID[imageID]
	return f[0], f[1], ok
}

func (c *imageGroupCache) put(imageID string, passwd, group []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[imageID]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.byID, c.order[0])
		c.order = c.order[1:]
	}
	c.byID[imageID] = [2][]byte{passwd, group}
	c.order = append(c.order, imageID)
}
