// Package cri implements the CRI RuntimeService on Docker: one file per
// RPC, each validating its request, reserving what it creates and
// delegating to dockerspec (translation), docker (the engine), network
// (CNI) and checkpoint (durable records). Server puts it together with the
// services of the other concerns (internal/cri/images) for gRPC.
package cri

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/pause"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/streaming"
)

// Daemon is the part of the Docker client that reports on the daemon itself.
type Daemon interface {
	// Health returns the last known state of the connection.
	Health() docker.Health
	// Probe pings the daemon now and returns the fresh state.
	Probe(ctx context.Context) docker.Health
}

// Containers is the part of the Docker client that manages containers.
type Containers interface {
	CreateContainer(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, grace time.Duration, signal string) error
	RemoveContainer(ctx context.Context, id string) error
	InspectContainer(ctx context.Context, id string) (container.InspectResponse, error)
	ListContainers(ctx context.Context, labels ...string) ([]container.Summary, error)
	UpdateContainerResources(ctx context.Context, id string, r *container.Resources) error
	ReadFile(ctx context.Context, id, path string, max int64) ([]byte, error)
	StatPath(ctx context.Context, id, path string) (container.PathStat, error)
	CDIDevices(ctx context.Context) ([]string, error)
	ContainerEvents(ctx context.Context, since time.Time, labels ...string) (<-chan events.Message, <-chan error)
	ImageID(ctx context.Context, ref string) (string, error)
	ImageLayers(ctx context.Context, ref string) ([]string, error)
	ImportImage(ctx context.Context, rootfs io.Reader, ref string, changes []string) error
	// StartContainerFromCheckpoint starts a created container from the
	// processes of its checkpoint name (in Docker's checkpoint directory
	// for the container): StartContainer of a container RestorePod made.
	StartContainerFromCheckpoint(ctx context.Context, id, name string) error
}

// Network sets up pod networks.
type Network interface {
	// Ready reports whether pods can be networked now and, if not, why.
	Ready() (bool, string)
	// UsesCNI is false in Docker-bridge mode.
	UsesCNI() bool
	Prepare(pod network.PodNetwork) (*network.Attachment, error)
	Add(ctx context.Context, sandboxID string, a *network.Attachment) error
	Del(ctx context.Context, sandboxID string, a *network.Attachment, netns string) error
	Check(ctx context.Context, sandboxID string, a *network.Attachment) error
	// CachedIPs reads the IPs libcni cached for a sandbox set up by
	// another runtime (cri-dockerd), or nil.
	CachedIPs(sandboxID string) []string
	// SetPodCIDR records the pod CIDR kubelet gives, which reaches CNI
	// plugins that ask for it (ipRanges); it reports whether it changed.
	SetPodCIDR(cidr string) bool
	// PodCIDR returns the pod CIDR last set.
	PodCIDR() string
}

// Streams hands out the single-use URLs of the streaming server, where
// Exec, Attach and PortForward happen (internal/streaming).
type Streams interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// Execer runs a command in a container to completion (ExecSync).
type Execer interface {
	RunExec(ctx context.Context, containerID string, o streaming.ExecOptions) (streaming.ExecResult, error)
}

// Deps are what the CRI service is built from.
type Deps struct {
	Config      config.Config
	Daemon      Daemon
	Docker      Containers
	Network     Network
	Checkpoints *checkpoint.Store
	Store       *store.Store
	// Host describes what this host lets containers have.
	Host HostFacts
	// Logs forwards containers' output into the files kubelet reads.
	Logs   Logs
	Logger *slog.Logger
	// Images looks up the user an image runs as (CreateContainer).
	Images Images
	// SandboxImages pulls the pod sandbox image when it is missing
	// (internal/cri/images); nil never pulls it.
	SandboxImages SandboxImages
	// Streams and Exec serve Exec, Attach, PortForward and ExecSync
	// (container_exec.go, container_attach.go, sandbox_portforward.go).
	Streams Streams
	Exec    Execer
}

// Images is the part of Docker's image store the runtime reads.
type Images interface {
	// InspectImage looks an image up by reference, id or id prefix.
	InspectImage(ctx context.Context, ref string) (image.InspectResponse, error)
}

// SandboxImages pulls the pod sandbox image, with the node's credentials.
type SandboxImages interface {
	PullSandboxImage(ctx context.Context, image string) error
}

// HostFacts are read once at start-up by internal/hostinfo.
type HostFacts struct {
	// OOM is how low an oom_score_adj this host lets Docker set.
	OOM dockerspec.OOMPolicy
	// Capabilities are the host's, when it lacks some; nil when it has all.
	Capabilities []string
	// Devices are the host's device nodes.
	Devices []string
	// AppArmor is true when the kernel has AppArmor.
	AppArmor bool
}

// Logs forwards each container's output from Docker's json-file log to
// the CRI log file kubelet asked for.
type Logs interface {
	// Follow starts or resumes forwarding; it is idempotent.
	Follow(id, dockerLogPath, criPath string, running func() bool) error
	// Exited forwards what is left of a stopped container's output.
	Exited(id string)
	// Reopen continues in a new file at the same path (log rotation).
	Reopen(id string) error
	// Forget stops forwarding and drops the state of a removed container.
	Forget(id string)
}

// Service serves runtime.v1 RuntimeService. RPCs it does not implement
// answer Unimplemented through the embedded type.
//
// Its fields are grouped by what they are for: the node's parts it works
// through (Docker, CNI, the checkpoints, the index, the log forwarder, the
// pause image), what the host allows, the streaming server, and three
// things of its own: the guards that order concurrent calls, caches, and
// the container-event feed.
type Service struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	cfg config.Config
	log *slog.Logger

	docker      dockerAPI
	network     Network
	checkpoints *checkpoint.Store
	store       *store.Store
	logs        Logs
	pause       *pause.Ensurer

	host   HostFacts
	stream streamServer

	guard  guards
	caches caches
	events eventFeed
}

// dockerAPI is the Docker daemon in the three views the runtime takes of
// it; one client serves all three.
type dockerAPI struct {
	Daemon
	Containers
	Images
}

// streamServer is where Exec, Attach and PortForward happen, and how
// ExecSync runs.
type streamServer struct {
	urls Streams
	exec Execer
}

// guards order concurrent calls: one make per name, one change per id.
type guards struct {
	// runs single-flights RunPodSandbox and CreateContainer per name.
	runs *detachedRuns
	// locks serialises the operations on one sandbox or container id.
	locks *keyedMutex
}

// caches keep what would be costly to work out again on every call.
type caches struct {
	// conv caches the CRI form of index records for List calls.
	conv *convCache
	// imageGroups caches, by image id, the groups each image's /etc/group
	// gives users (images never change).
	imageGroups *imageGroupCache
	// unknownCaps are capabilities this Docker rejected as unknown (older
	// Docker releases lack the newest ones); privileged containers are not
	// given them.
	unknownCaps sync.Map
}

// eventFeed is the container events: the hub serving
// GetContainerEvents, and where the Docker event watcher starts.
type eventFeed struct {
	// hub serves GetContainerEvents (container_events.go); Start runs it.
	hub *eventHub
	// since is when start-up recovery listed Docker; the event watcher
	// starts from there so nothing in between is missed.
	since time.Time
}

var _ runtimeapi.RuntimeServiceServer = (*Service)(nil)

// New returns the service. It does no I/O.
func New(d Deps) *Service {
	s := &Service{
		cfg:         d.Config,
		log:         d.Logger,
		docker:      dockerAPI{Daemon: d.Daemon, Containers: d.Docker, Images: d.Images},
		network:     d.Network,
		checkpoints: d.Checkpoints,
		store:       d.Store,
		logs:        d.Logs,
		host:        d.Host,
		stream:      streamServer{urls: d.Streams, exec: d.Exec},
		guard:       guards{runs: newDetachedRuns(), locks: newKeyedMutex()},
		caches:      caches{conv: newConvCache(), imageGroups: newImageGroupCache(256)},
	}
	s.events.hub = newEventHub(s.store, d.Logger)
	s.pause = &pause.Ensurer{
		Image:   d.Config.PodInfraContainerImage,
		Builtin: d.Config.PodInfraContainerImage == config.DefaultPauseImage,
		Docker:  d.Docker,
		Log:     d.Logger,
	}
	if d.SandboxImages != nil {
		s.pause.Pull = d.SandboxImages.PullSandboxImage
	}
	return s
}
