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
// in-flight calls for at most cfg.ShutdownTimeout and returns nil.
func Run(ctx context.Context, cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	level, _ := config.ParseLogLevel(cfg.LogLevel)
	log := logging.New(os.Stderr, level, cfg.LogFormat)
	log.Info("starting berth", "version", version.String(), "endpoint", cfg.Endpoint, "docker", cfg.DockerEndpoint)
	for _, f := range cfg.IgnoredFlags() {
		log.Warn("a flag accepted for cri-dockerd compatibility has no effect", "flag", f.Flag, "why", f.Why, "instead", f.Where)
	}

	if err := os.MkdirAll(cfg.RootDir, 0o700); err != nil {
		return fmt.Errorf("--root-dir: %w", err)
	}

	m := metrics.New()

	dockerClient, err := docker.New(docker.Options{
		Endpoint:       cfg.DockerEndpoint,
		RequestTimeout: cfg.RuntimeRequestTimeout,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer dockerClient.Close()
	dockerClient.OnHealthChange(func(h docker.Health) {
		if h.Ready {
			m.DockerUp.Set(1)
		} else {
			m.DockerUp.Set(0)
		}
	})
	// Before dockerClient.Run, so the first connection moves Docker too.
	if err := placeRuntime(ctx, cfg, log, dockerClient); err != nil {
		return err
	}

	netManager := network.New(network.Options{
		Plugin:   cfg.NetworkPlugin,
		BinDirs:  cfg.CNIBinDirs,
		ConfDir:  cfg.CNIConfDir,
		CacheDir: cfg.CNICacheDir,
		MTU:      cfg.NetworkPluginMTU,
		PodCIDR:  cfg.PodCIDR,
	})

	sandboxRecords, err := checkpoint.Open(filepath.Join(cfg.RootDir, "sandboxes"))
	if err != nil {
		return fmt.Errorf("--root-dir: %w", err)
	}
	logManager, err := logs.NewManager(filepath.Join(cfg.RootDir, "logs"), log)
	if err != nil {
		return fmt.Errorf("--root-dir: %w", err)
	}
	// Positions are saved on the way out, so a restart resumes exactly.
	defer logManager.Close()

	index := store.New()
	// Exec, attach and port-forward happen on the streaming server, at the
	// URLs the RPCs return; it listens now, so those URLs are known.
	streamRuntime := streaming.NewRuntime(dockerClient, index, log)
	streamAddr, _ := config.StreamingAddr(cfg.StreamingBindAddr) // validated above
	streamServer, err := streaming.NewServer(streaming.Config{
		Addr:        streamAddr,
		IdleTimeout: cfg.StreamingConnectionIdleTimeout,
		TLSCertFile: cfg.StreamingTLSCertFile,
		TLSKeyFile:  cfg.StreamingTLSKeyFile,
		Logger:      log,
	}, streamRuntime)
	if err != nil {
		return err
	}
	defer streamServer.Close()

	// The containers' writable layers are measured in the background, for
	// ImageFsInfo and the stats RPCs.
	layers := images.NewLayerSampler(dockerClient)
	imageService := images.New(images.Deps{
		Config: cfg,
		Daemon: dockerClient,
		Docker: dockerClient,
		Layers: layers,
	})
	service := cri.New(cri.Deps{
		Config:      cfg,
		Daemon:      dockerClient,
		Docker:      dockerClient,
		Network:     netManager,
		Checkpoints: sandboxRecords,
		Store:       index,
		OOM:         hostinfo.OOMPolicy(cfg.OOMScoreAdjPolicy, log),
		Host: cri.HostFacts{
			Capabilities: hostinfo.Capabilities(),
			Devices:      hostinfo.Devices(),
			AppArmor:     hostinfo.AppArmor(),
		},
		Logs:          logManager,
		Images:        dockerClient,
		SandboxImages: imageService,
		Logger:        log,

		Streams: streamServer,
		Exec:    streamRuntime,
	})
	statsService := stats.New(stats.Deps{Store: index, Daemon: dockerClient, Layers: layers})
	checkpointService := checkpoints.New(checkpoints.Deps{
		Config:  cfg,
		Docker:  dockerClient,
		Runtime: service.ForCheckpoints(),
		Store:   index,
	})
	// One server for kubelet: each RPC goes to the service of its concern.
	criServer := &cri.Server{
		Service:           service,
		ImageService:      imageService,
		StatsService:      statsService,
		CheckpointService: checkpointService,
	}

	gate := interceptor.NewGate(10*time.Second, func() string {
		if h := dockerClient.Health(); !h.Ready {
			return h.Reason
		}
		return ""
	})
	chain := &interceptor.Chain{Log: log, Metrics: m, Gate: gate}
	server := grpc.NewServer(
		grpc.ChainUnaryInterceptor(chain.Unary()),
		grpc.ChainStreamInterceptor(chain.Stream()),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ForceServerCodecV2(service.Codec()),
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
	runtimeapi.RegisterRuntimeServiceServer(server, criServer)
	runtimeapi.RegisterImageServiceServer(server, criServer)

	gid := -1
	if cfg.SocketGroup != "" {
		if gid, err = config.LookupGroup(cfg.SocketGroup); err != nil {
			return fmt.Errorf("--socket-group: %w", err)
		}
	}
	listener, err := sockets.Listen(cfg.Endpoint, gid)
	if err != nil {
		return err
	}

	runCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	bg := logging.WithLogger(runCtx, log) // internal/panics logs with it
	panics.Go(bg, panics.Docker, func() { dockerClient.Run(runCtx) })
	service.Start(bg) // event hub; before recovery
	statsService.Start(bg)
	panics.Go(bg, panics.Recovery, func() { recoverThenOpen(bg, log, dockerClient, service, gate) })

	var metricsServer *http.Server
	if cfg.MetricsAddress != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddress)
		if err != nil {
			listener.Close()
			return fmt.Errorf("--metrics-address: %w", err)
		}
		metricsServer = &http.Server{
			Handler: m.Handler(func(context.Context) error {
				if h := dockerClient.Health(); !h.Ready {
					return errors.New(h.Reason)
				}
				return nil
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		panics.Go(bg, panics.Server, func() { _ = metricsServer.Serve(ml) })
		log.Info("serving metrics", "address", ml.Addr().String())
	}

	panics.Go(bg, panics.Server, func() {
		if err := streamServer.Serve(); err != nil {
			log.Error("streaming server stopped", "error", err)
		}
	})
	log.Info("serving exec, attach and port-forward", "url", streamServer.URL())

	serveErr := make(chan error, 1)
	panics.GoThen(bg, panics.Server, func() error { return server.Serve(listener) }, func(err error) { serveErr <- err })
	log.Info("serving CRI", "endpoint", cfg.Endpoint)

	select {
	case err := <-serveErr:
		return fmt.Errorf("CRI server stopped: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: draining in-flight calls", "timeout", cfg.ShutdownTimeout)
	drained := make(chan struct{})
	panics.GoThen(bg, panics.Server, func() error { server.GracefulStop(); return nil }, func(error) { close(drained) })
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("in-flight calls did not finish in time; stopping them")
		server.Stop()
	}
	_ = streamServer.Close()
	if metricsServer != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = metricsServer.Shutdown(shutdownCtx)
		cancel()
	}
	log.Info("stopped")
	return nil
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
