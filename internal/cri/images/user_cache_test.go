package images

import (
	"context"
	"sync"
	"testing"

	dockerimage "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// inspectOnly is a Docker whose only working call is InspectImage.
type inspectOnly struct {
	Docker
	mu       sync.Mutex
	users    map[string]string // id → User; absent ids are not found
	inspects map[string]int
}

func (f *inspectOnly) InspectImage(_ context.Context, id string) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inspects[id]++
	u, ok := f.users[id]
	if !ok {
		return image.InspectResponse{}, errdefs.NotFound("image", id)
	}
	return image.InspectResponse{ID: id, Config: &dockerimage.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{User: u}}}, nil
}

var _ Docker = (*inspectOnly)(nil)

func TestUserCache(t *testing.T) {
	f := &inspectOnly{users: map[string]string{"a": "1000", "b": "app", "c": ""}, inspects: map[string]int{}}
	var c userCache
	ctx := context.Background()

	got, err := c.get(ctx, f, []string{"a", "b", "c", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != "1000" || got["b"] != "app" || got["c"] != "" || len(got) != 3 {
		t.Errorf("users = %v", got)
	}
	// Cached: no more inspects.
	if _, err := c.get(ctx, f, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if f.inspects[id] != 1 {
			t.Errorf("%s inspected %d times, want once", id, f.inspects[id])
		}
	}
	// Images gone from the list are forgotten; a put is used as is.
	c.put("d", "42")
	got, _ = c.get(ctx, f, []string{"a", "d"})
	if got["d"] != "42" || f.inspects["d"] != 0 {
		t.Errorf("put entry not used: %v, %d inspects", got, f.inspects["d"])
	}
	c.mu.Lock()
	n := len(c.users)
	c.mu.Unlock()
	if n != 2 {
		t.Errorf("cache holds %d entries, want the 2 listed", n)
	}
	c.forget("a")
	c.get(ctx, f, []string{"a"})
	if f.inspects["a"] != 2 {
		t.Errorf("forgotten entry not looked up again")
	}
}
