// Package cri implements the CRI RuntimeService and ImageService on Docker:
// one file per RPC, each validating its request, reserving what it creates
// and delegating to dockerspec (translation), docker (the engine), network
// (CNI) and checkpoint (durable records).
package cri

import (
	"context"
	"log/slog"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
)

// Daemon is the part of the Docker client that reports on the daemon itself.
type Daemon interface {
	// Health returns the last known state of the connection.
	Health() docker.Health
	// Probe pings the daemon now and returns the fresh state.
	Probe(ctx context.Context) docker.Health
}

// Network reports whether pod networking can be set up.
type Network interface {
	Ready() (bool, string)
}

// Deps are what the CRI service is built from.
type Deps struct {
	Config  config.Config
	Daemon  Daemon
	Network Network
	Logger  *slog.Logger
	// Images and Layers serve the ImageService (image_*.go).
	Images Images
	Layers ContainerLayers
}

// Service serves runtime.v1 RuntimeService and ImageService. RPCs it does
// not implement answer Unimplemented through the embedded types.
type Service struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg     config.Config
	daemon  Daemon
	network Network
	log     *slog.Logger
	images  Images
	img     *imageState

	mu      sync.Mutex // guards podCIDR
	podCIDR string
}

var (
	_ runtimeapi.RuntimeServiceServer = (*Service)(nil)
	_ runtimeapi.ImageServiceServer   = (*Service)(nil)
)

// New returns the service. It does no I/O.
func New(d Deps) *Service {
	return &Service{
		cfg:     d.Config,
		daemon:  d.Daemon,
		network: d.Network,
		log:     d.Logger,
		podCIDR: d.Config.PodCIDR,
		images:  d.Images,
		img:     newImageState(d.Config, d.Layers),
	}
}

// Recover rebuilds Berth's in-memory view from Docker and the checkpoints.
// It runs once at start-up, after Docker first answers and before the
// readiness gate opens.
func (s *Service) Recover(ctx context.Context) error {
	return nil
}
