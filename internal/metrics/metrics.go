// Package metrics holds Berth's Prometheus registry and the HTTP handler that
// serves /metrics, /healthz and net/http/pprof.
package metrics

import (
	"context"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Process-wide collectors, for code that has no Metrics at hand: the
// goroutine starts (internal/panics), the index (internal/store) and the
// Docker client (internal/docker) are everywhere and built before or
// without the registry. New registers them in every registry it makes.
var (
	// Panics counts panics recovered in Berth's goroutines, by where the
	// goroutine runs (internal/panics names them).
	Panics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berth", Name: "panics_total",
		Help: "Panics recovered (each logged with its stack), by the kind of goroutine they happened in.",
	}, []string{"where"})
	// EventsDropped counts changes and container events a subscriber had
	// no room for, by subscriber; each makes that subscriber resync.
	EventsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berth", Name: "events_dropped_total",
		Help: "Index changes or container events dropped because a subscriber's queue was full (the subscriber then resyncs), by subscriber.",
	}, []string{"subscriber"})
	// DockerRequestDuration observes the Docker API requests Docker
	// answered, by operation (internal/docker names them): where a CRI
	// call's time goes between Berth and the daemon.
	DockerRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "berth", Subsystem: "docker", Name: "request_duration_seconds",
		Help:    "Time from sending a Docker API request to Docker's response headers, by operation (method and path with ids and names as {id}); requests that got no response are not counted.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"operation"})
)

// Metrics is Berth's registry and the collectors every package shares.
type Metrics struct {
	Registry *prometheus.Registry

	// RPCRequests counts finished CRI calls by method and gRPC code.
	RPCRequests *prometheus.CounterVec
	// RPCDuration observes CRI call latency by method.
	RPCDuration *prometheus.HistogramVec
	// RPCInFlight is the number of CRI calls being served, by method.
	RPCInFlight *prometheus.GaugeVec
	// DockerUp is 1 while Docker answers, 0 otherwise.
	DockerUp prometheus.Gauge
}

// New returns a registry with the Go runtime and process collectors and
// Berth's own metrics registered.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		RPCRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "berth", Subsystem: "cri", Name: "requests_total",
			Help: "CRI calls served, by method and gRPC status code.",
		}, []string{"method", "code"}),
		RPCDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "berth", Subsystem: "cri", Name: "request_duration_seconds",
			Help:    "Latency of CRI calls, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"method"}),
		RPCInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "berth", Subsystem: "cri", Name: "requests_in_flight",
			Help: "CRI calls being served, by method.",
		}, []string{"method"}),
		DockerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "berth", Name: "docker_up",
			Help: "1 while Docker Engine answers Berth's pings, 0 otherwise.",
		}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.RPCRequests, m.RPCDuration, m.RPCInFlight, m.DockerUp,
		Panics, EventsDropped, DockerRequestDuration,
	)
	return m
}

// Handler serves /metrics, /healthz (200 when healthy returns nil, else 503
// with the error) and /debug/pprof/.
func (m *Metrics) Handler(healthy func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := healthy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
