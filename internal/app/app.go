// Package app wires Berth together: it builds every dependency in order,
// recovers state, serves CRI (and metrics), and shuts down. Reading Run
// shows the whole system.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/cri"
	"github.com/berth-cri/berth/internal/cri/checkpoints"
	"github.com/berth-cri/berth/internal/cri/images"
	"github.com/berth-cri/berth/internal/cri/stats"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/hostinfo"
	"github.com/berth-cri/berth/internal/interceptor"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/logs"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/sockets"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/streaming"
	"github.com/berth-cri/berth/internal/version"
)

// maxMsgSize bounds CRI messages both ways, as kubelet's client does
// (16 MiB): big enough for ListContainers on a full node, small enough that a
// garbage request cannot make Berth allocate without bound.
const maxMsgSize = 16 << 20

// The CRI server's transport sizes, chosen in docs/performance.md.
const (
	writeBufferSize = 256 << 10
	flowWindow      = 1 << 20
)

// Run serves CRI until ctx is cancelled (SIGTERM/SIGINT), then drains
// in-flight calls for at most cfg.ShutdownTimeout and returns nil. It reads
// as the order in which Berth starts: each step is a function below, and
// what a step opens is closed, by a defer here, in the reverse order.
func Run(ctx context.Context, cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := startLogging(cfg)
	if err := os.MkdirAll(cfg.RootDir, 0o700); err != nil {
		return fmt.Errorf("--root-dir: %w", err)
	}
	m := metrics.New()

	dockerClient, err := connectDocker(ctx, cfg, log, m)
	if err != nil {
		return err
	}
	defer dockerClient.Close()
	netManager := newNetwork(cfg)
	disk, err := openRootDir(cfg, log)
	if err != nil {
		return err
	}
	// Positions are saved on the way out, so a restart resumes exactly.
	defer disk.logs.Close()
	index := store.New()
	stream, err := listenStreaming(cfg, log, dockerClient, index)
	if err != nil {
		return err
	}
	defer stream.server.Close()

	svc := newServices(cfg, log, dockerClient, netManager, disk, index, stream)
	gate := newGate(dockerClient)
	server := newGRPCServer(log, m, gate, svc)
	listener, err := listenCRI(cfg)
	if err != nil {
		return err
	}

	runCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	bg := startBackground(runCtx, log, dockerClient, svc, gate)
	metricsServer, err := serveMetrics(bg, cfg, log, m, dockerClient)
	if err != nil {
		listener.Close()
		return err
	}
	serveStreaming(bg, log, stream.server)
	serveErr := serveCRI(bg, cfg, log, server, listener)

	select {
	case err := <-serveErr:
		return fmt.Errorf("CRI server stopped: %w", err)
	case <-ctx.Done():
	}
	shutdown(bg, cfg, log, server, stream.server, metricsServer)
	return nil
}

// startLogging makes the logger and warns of the flags that do nothing.
func startLogging(cfg config.Config) *slog.Logger {
	level, _ := config.ParseLogLevel(cfg.LogLevel) // validated in Run
	log := logging.New(os.Stderr, level, cfg.LogFormat)
	log.Info("starting berth", "version", version.String(), "endpoint", cfg.Endpoint, "docker", cfg.DockerEndpoint)
	for _, f := range cfg.IgnoredFlags() {
		log.Warn("a flag accepted for cri-dockerd compatibility has no effect", "flag", f.Flag, "why", f.Why, "instead", f.Where)
	}
	return log
}

// connectDocker makes the Docker client, which reports its health to the
// metrics, and puts Berth (and Docker, once it answers) in
// --runtime-cgroups. The client connects when startBackground runs it.
func connectDocker(ctx context.Context, cfg config.Config, log *slog.Logger, m *metrics.Metrics) (*docker.Client, error) {
	dockerClient, err := docker.New(docker.Options{
		Endpoint:       cfg.DockerEndpoint,
		RequestTimeout: cfg.RuntimeRequestTimeout,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	dockerClient.OnHealthChange(func(h docker.Health) {
		if h.Ready {
			m.DockerUp.Set(1)
		} else {
			m.DockerUp.Set(0)
		}
	})
	// Before dockerClient.Run, so the first connection moves Docker too.
	if err := placeRuntime(ctx, cfg, log, dockerClient); err != nil {
		dockerClient.Close()
		return nil, err
	}
	return dockerClient, nil
}

// newNetwork makes the CNI manager (or Docker-bridge mode); it does no I/O.
func newNetwork(cfg config.Config) *network.Manager {
	return network.New(network.Options{
		Plugin:   cfg.NetworkPlugin,
		BinDirs:  cfg.CNIBinDirs,
		ConfDir:  cfg.CNIConfDir,
		CacheDir: cfg.CNICacheDir,
		MTU:      cfg.NetworkPluginMTU,
		PodCIDR:  cfg.PodCIDR,
	})
}

// rootDir is what Berth keeps under --root-dir.
type rootDir struct {
	// sandboxes are the sandboxes' checkpoints.
	sandboxes *checkpoint.Store
	// logs forwards containers' output, resuming where it stopped.
	logs *logs.Manager
}

// openRootDir opens the sandbox checkpoints and the log forwarder's state.
func openRootDir(cfg config.Config, log *slog.Logger) (rootDir, error) {
	sandboxes, err := checkpoint.Open(filepath.Join(cfg.RootDir, "sandboxes"))
	if err != nil {
		return rootDir{}, fmt.Errorf("--root-dir: %w", err)
	}
	logManager, err := logs.NewManager(filepath.Join(cfg.RootDir, "logs"), log)
	if err != nil {
		return rootDir{}, fmt.Errorf("--root-dir: %w", err)
	}
	return rootDir{sandboxes: sandboxes, logs: logManager}, nil
}

// streams are the streaming server and the runtime behind it.
type streams struct {
	runtime *streaming.Runtime
	server  *streaming.Server
}

// listenStreaming makes the server where exec, attach and port-forward
// happen, at the URLs the RPCs return; it listens now, so those URLs are
// known before the services are built.
func listenStreaming(cfg config.Config, log *slog.Logger, d *docker.Client, index *store.Store) (streams, error) {
	runtime := streaming.NewRuntime(d, index, log)
	addr, _ := config.StreamingAddr(cfg.StreamingBindAddr) // validated in Run
	server, err := streaming.NewServer(streaming.Config{
		Addr:        addr,
		IdleTimeout: cfg.StreamingConnectionIdleTimeout,
		TLSCertFile: cfg.StreamingTLSCertFile,
		TLSKeyFile:  cfg.StreamingTLSKeyFile,
		Logger:      log,
	}, runtime)
	if err != nil {
		return streams{}, err
	}
	return streams{runtime: runtime, server: server}, nil
}

// services are the CRI services, and the one server for kubelet they
// make together.
type services struct {
	runtime *cri.Service
	stats   *stats.Service
	// server sends each RPC to the service of its concern.
	server *cri.Server
}

// newServices builds the four CRI services and puts them into one server
// for kubelet. It does no I/O.
func newServices(cfg config.Config, log *slog.Logger, d *docker.Client, netManager *network.Manager, disk rootDir, index *store.Store, stream streams) services {
	// The containers' writable layers are measured in the background, for
	// ImageFsInfo and the stats RPCs.
	layers := images.NewLayerSampler(d)
	imageService := images.New(images.Deps{
		Config: cfg,
		Daemon: d,
		Docker: d,
		Layers: layers,
	})
	service := cri.New(cri.Deps{
		Config:      cfg,
		Daemon:      d,
		Docker:      d,
		Network:     netManager,
		Checkpoints: disk.sandboxes,
		Store:       index,
		Host: cri.HostFacts{
			OOM:          hostinfo.OOMPolicy(cfg.OOMScoreAdjPolicy, log),
			Capabilities: hostinfo.Capabilities(),
			Devices:      hostinfo.Devices(),
			AppArmor:     hostinfo.AppArmor(),
		},
		Logs:          disk.logs,
		Images:        d,
		SandboxImages: imageService,
		Logger:        log,

		Streams: stream.server,
		Exec:    stream.runtime,
	})
	statsService := stats.New(stats.Deps{Store: index, Daemon: d, Layers: layers})
	checkpointService := checkpoints.New(checkpoints.Deps{
		Config:  cfg,
		Docker:  d,
		Runtime: service.ForCheckpoints(),
		Store:   index,
	})
	return services{
		runtime: service,
		stats:   statsService,
		server: &cri.Server{
			Service:           service,
			ImageService:      imageService,
			StatsService:      statsService,
			CheckpointService: checkpointService,
		},
	}
}

// newGate makes the readiness gate: it refuses CRI calls until recovery
// opens it, and while Docker is down.
func newGate(d *docker.Client) *interceptor.Gate {
	return interceptor.NewGate(10*time.Second, func() string {
		if h := d.Health(); !h.Ready {
			return h.Reason
		}
		return ""
	})
}

// newGRPCServer makes the CRI gRPC server, with the interceptor chain, and
// registers both CRI services on it: the one place they are registered.
func newGRPCServer(log *slog.Logger, m *metrics.Metrics, gate *interceptor.Gate, svc services) *grpc.Server {
	chain := &interceptor.Chain{Log: log, Metrics: m, Gate: gate}
	server := grpc.NewServer(
		grpc.ChainUnaryInterceptor(chain.Unary()),
		grpc.ChainStreamInterceptor(chain.Stream()),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ForceServerCodecV2(svc.runtime.Codec()),
		// A list of 100 containers is about 35 KB: a write buffer that
		// holds a large list sends it in one write rather than two. gRPC
		// shares write buffers between connections, so idle ones keep none.
		grpc.WriteBufferSize(writeBufferSize),
		// Fixed flow-control windows turn off gRPC's bandwidth estimator,
		// whose ping costs every call a write and a read; a local socket
		// has no bandwidth to estimate.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
	)
	runtimeapi.RegisterRuntimeServiceServer(server, svc.server)
	runtimeapi.RegisterImageServiceServer(server, svc.server)
	return server
}

// listenCRI opens the CRI socket (or takes the one systemd passed), owned
// by --socket-group.
func listenCRI(cfg config.Config) (net.Listener, error) {
	gid := -1
	if cfg.SocketGroup != "" {
		var err error
		if gid, err = config.LookupGroup(cfg.SocketGroup); err != nil {
			return nil, fmt.Errorf("--socket-group: %w", err)
		}
	}
	return sockets.Listen(cfg.Endpoint, gid)
}

// startBackground starts, under runCtx, the Docker connection, the event
// hub, the stats sampler and the recovery that opens the gate, in that
// order. It returns runCtx with the logger internal/panics logs with.
func startBackground(runCtx context.Context, log *slog.Logger, d *docker.Client, svc services, gate *interceptor.Gate) context.Context {
	bg := logging.WithLogger(runCtx, log)
	panics.Go(bg, panics.Docker, func() { d.Run(runCtx) })
	svc.runtime.Start(bg) // event hub; before recovery
	svc.stats.Start(bg)
	panics.Go(bg, panics.Recovery, func() { recoverThenOpen(bg, log, d, svc.runtime, gate) })
	return bg
}

// serveMetrics serves /metrics (and its health check) on
// --metrics-address; with none it serves nothing and returns nil.
func serveMetrics(bg context.Context, cfg config.Config, log *slog.Logger, m *metrics.Metrics, d *docker.Client) (*http.Server, error) {
	if cfg.MetricsAddress == "" {
		return nil, nil
	}
	ml, err := net.Listen("tcp", cfg.MetricsAddress)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address: %w", err)
	}
	metricsServer := &http.Server{
		Handler: m.Handler(func(context.Context) error {
			if h := d.Health(); !h.Ready {
				return errors.New(h.Reason)
			}
			return nil
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	panics.Go(bg, panics.Server, func() { _ = metricsServer.Serve(ml) })
	log.Info("serving metrics", "address", ml.Addr().String())
	return metricsServer, nil
}

// serveStreaming serves exec, attach and port-forward on the listener
// listenStreaming opened.
func serveStreaming(bg context.Context, log *slog.Logger, s *streaming.Server) {
	panics.Go(bg, panics.Server, func() {
		if err := s.Serve(); err != nil {
			log.Error("streaming server stopped", "error", err)
		}
	})
	log.Info("serving exec, attach and port-forward", "url", s.URL())
}

// serveCRI serves kubelet's calls; the channel gets the error if the
// server stops on its own.
func serveCRI(bg context.Context, cfg config.Config, log *slog.Logger, server *grpc.Server, listener net.Listener) <-chan error {
	serveErr := make(chan error, 1)
	panics.GoThen(bg, panics.Server, func() error { return server.Serve(listener) }, func(err error) { serveErr <- err })
	log.Info("serving CRI", "endpoint", cfg.Endpoint)
	return serveErr
}

// shutdown drains in-flight CRI calls for at most cfg.ShutdownTimeout and
// then stops them, then stops streaming and metrics. What Run deferred
// closes after it.
func shutdown(bg context.Context, cfg config.Config, log *slog.Logger, server *grpc.Server, stream *streaming.Server, metricsServer *http.Server) {
	log.Info("shutting down: draining in-flight calls", "timeout", cfg.ShutdownTimeout)
	drained := make(chan struct{})
	panics.GoThen(bg, panics.Server, func() error { server.GracefulStop(); return nil }, func(error) { close(drained) })
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("in-flight calls did not finish in time; stopping them")
		server.Stop()
	}
	_ = stream.Close()
	if metricsServer != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = metricsServer.Shutdown(shutdownCtx)
		cancel()
	}
	log.Info("stopped")
}

// recoverThenOpen waits for Docker, rebuilds the service's state from it,
// and opens the readiness gate. It retries until it succeeds or ctx ends.
func recoverThenOpen(ctx context.Context, log *slog.Logger, d *docker.Client, s *cri.Service, gate *interceptor.Gate) {
	for attempt := 0; ; attempt++ {
		if h := d.Probe(ctx); h.Ready {
			start := time.Now()
			if err := s.Recover(ctx); err == nil {
				log.Info("state recovered from Docker; accepting all CRI calls", "took", time.Since(start))
				gate.Open()
				panics.Go(ctx, panics.EventWatch, func() { s.Watch(ctx) })
				return
			} else {
				log.Error("recovering state from Docker", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(attempt+1)*250*time.Millisecond, 5*time.Second)):
		}
	}
}
