package docker

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/metrics"
)

// requestStartKey carries the time a request was handed to the transport,
// from the request hook to the response hook.
type requestStartKey struct{}

// timingHooks are the moby client options that observe every answered
// request in metrics.DockerRequestDuration. moby's hooks wrap its whole
// transport, so the figure is what a Berth call waits for Docker.
func timingHooks() []client.Opt {
	return []client.Opt{
		client.WithHTTPRequestHook(func(r *http.Request) error {
			// The hook gets moby's copy of the request, which it then
			// sends: a context value travels with it to the response.
			*r = *r.WithContext(context.WithValue(r.Context(), requestStartKey{}, time.Now()))
			return nil
		}),
		client.WithHTTPResponseHook(func(resp *http.Response) {
			if resp.Request == nil {
				return
			}
			start, ok := resp.Request.Context().Value(requestStartKey{}).(time.Time)
			if !ok {
				return
			}
			metrics.DockerRequestDuration.WithLabelValues(operation(resp.Request.Method, resp.Request.URL.Path)).Observe(time.Since(start).Seconds())
		}),
	}
}

// apiVersionPrefix is the /v1.41 a negotiated request's path starts with.
var apiVersionPrefix = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// pathWords are the path segments of Docker's API that name a collection
// or an action; every other segment is an id or a name (an image's spans
// several). Unknown words become {id} too, which keeps the label's values
// few whatever the paths.
var pathWords = map[string]bool{
	"_ping": true, "archive": true, "attach": true, "auth": true, "build": true,
	"changes": true, "checkpoints": true, "connect": true, "containers": true,
	"create": true, "df": true, "disconnect": true, "distribution": true,
	"events": true, "exec": true, "export": true, "get": true, "history": true,
	"images": true, "info": true, "json": true, "kill": true, "load": true,
	"logs": true, "networks": true, "pause": true, "plugins": true,
	"prune": true, "push": true, "rename": true, "resize": true,
	"restart": true, "search": true, "start": true, "stats": true, "stop": true,
	"system": true, "tag": true, "top": true, "unpause": true, "update": true,
	"version": true, "volumes": true, "wait": true,
}

// operation is a request's label: its method and path without the API
// version, each run of id or name segments as one {id}, e.g.
// "POST /containers/{id}/start", "GET /images/{id}/json".
func operation(method, path string) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte(' ')
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) > 0 && apiVersionPrefix.MatchString(segs[0]) {
		segs = segs[1:]
	}
	prevID := false
	for _, s := range segs {
		if s == "" {
			continue
		}
		if !pathWords[s] {
			if !prevID {
				b.WriteString("/{id}")
			}
			prevID = true
			continue
		}
		// A name that is also a word (a container named "start") shows
		// as the word: the label stays one of few values either way.
		b.WriteByte('/')
		b.WriteString(s)
		prevID = false
	}
	if b.Len() == len(method)+1 {
		b.WriteByte('/')
	}
	return b.String()
}
