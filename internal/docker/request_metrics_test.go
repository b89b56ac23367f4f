package docker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/berth-cri/berth/internal/metrics"
)

func TestOperation(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/v1.41/containers/create", "POST /containers/create"},
		{"POST", "/v1.56/containers/0123abcd/start", "POST /containers/{id}/start"},
		{"GET", "/v1.41/containers/json", "GET /containers/json"},
		{"GET", "/v1.41/containers/k8s_POD_a_b_c_0/json", "GET /containers/{id}/json"},
		{"GET", "/v1.41/images/registry.local:5000/team/app:v1/json", "GET /images/{id}/json"},
		{"DELETE", "/v1.41/images/sha256:0123", "DELETE /images/{id}"},
		{"POST", "/v1.41/images/busybox/tag", "POST /images/{id}/tag"},
		{"GET", "/v1.41/distribution/docker.io/library/busybox/json", "GET /distribution/{id}/json"},
		{"POST", "/v1.41/exec/e1/start", "POST /exec/{id}/start"},
		{"HEAD", "/_ping", "HEAD /_ping"},
		{"GET", "/v1.41/info", "GET /info"},
		{"GET", "/", "GET /"},
		{"GET", "/v1.41/containers/c1/archive", "GET /containers/{id}/archive"},
	} {
		if got := operation(tc.method, tc.path); got != tc.want {
			t.Errorf("operation(%q, %q) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// The hooks observe each answered request once, under its operation, and
// leave the request and its answer to moby.
func TestRequestDurationObserved(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		if strings.HasSuffix(r.URL.Path, "/json") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"Id":"abc","Name":"/x","State":{"Status":"running"}}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	api, err := client.New(append([]client.Opt{client.WithHost("tcp://" + strings.TrimPrefix(srv.URL, "http://")), client.WithAPIVersion("1.41")}, timingHooks()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	const op = "GET /containers/{id}/json"
	count := func() uint64 {
		var m dto.Metric
		if err := metrics.DockerRequestDuration.WithLabelValues(op).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	n := count()
	res, err := api.ContainerInspect(context.Background(), "abc", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Container.ID != "abc" {
		t.Fatalf("inspect answered %+v", res.Container)
	}
	if got := count(); got != n+1 {
		t.Fatalf("%s observed %d times, want %d", op, got, n+1)
	}
}
