package streaming

import (
	"fmt"
	"net/url"
	"path"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	// tokenTTL is how long an exec or attach URL stays usable: the same
	// minute cri-streaming's request cache keeps its tokens.
	tokenTTL = time.Minute
	// maxPending bounds the unused URLs held at once, as cri-streaming's
	// cache does (it refuses more than 1000 in flight).
	maxPending = 1000
)

// pending holds the exec and attach requests whose URLs are not used yet.
// It is the gate every exec and attach connection passes first: a token is
// taken from it once, so it works once whether the client then speaks
// WebSocket v5 (served by Berth) or anything else (served by cri-streaming,
// which consumes its own copy).
type pending struct {
	mu   sync.Mutex // guards reqs
	reqs map[string]pendingRequest
	now  func() time.Time
}

type pendingRequest struct {
	req     proto.Message
	expires time.Time
}

func newPending() *pending {
	return &pending{reqs: map[string]pendingRequest{}, now: time.Now}
}

// put records req under the token of the URL cri-streaming issued for it.
func (p *pending) put(kind, rawURL string, req proto.Message) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("streaming URL %q: %w", rawURL, err)
	}
	token := path.Base(u.Path)
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, r := range p.reqs {
		if now.After(r.expires) {
			delete(p.reqs, k)
		}
	}
	if len(p.reqs) >= maxPending {
		return fmt.Errorf("more than %d streaming URLs are waiting to be used: %w", maxPending, errdefs.ErrResourceExhausted)
	}
	p.reqs[kind+"/"+token] = pendingRequest{req: req, expires: now.Add(tokenTTL)}
	return nil
}

// take removes and returns the request of a token, if it is there and has
// not expired.
func (p *pending) take(kind, token string) (proto.Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.reqs[kind+"/"+token]
	if !ok {
		return nil, false
	}
	delete(p.reqs, kind+"/"+token)
	if p.now().After(r.expires) {
		return nil, false
	}
	return r.req, true
}
