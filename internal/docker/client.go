// Package docker is Berth's connection to Docker Engine: a moby client with
// API-version negotiation, a health monitor that survives the daemon going
// away, and context-first calls whose errors are classified into Berth's
// sentinel errors.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
)

// MinAPIVersion is the oldest Docker API Berth speaks: Docker 20.10.
const MinAPIVersion = "1.41"

// Options configure a Client.
type Options struct {
	// Endpoint is the daemon address, e.g. unix:///var/run/docker.sock.
	Endpoint string
	// RequestTimeout bounds every call that is not long-running.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Client talks to one Docker daemon. It is safe for concurrent use.
type Client struct {
	// current is the moby client in use. A daemon that comes back after
	// an outage gets a fresh client, negotiated before it is published:
	// renegotiating a client other goroutines are using races on its
	// version (moby's client reads it unlocked once negotiated).
	current  atomic.Pointer[client.Client]
	endpoint string
	// slowPings counts the consecutive pings of an up daemon that timed
	// out; only the probe in flight (there is one at a time) uses it.
	slowPings int
	timeout   time.Duration
	log       *slog.Logger

	mu        sync.Mutex // guards health, listeners and probing
	health    Health
	listeners []func(Health)
	// probing is the probe in flight, which every Probe caller meanwhile
	// shares; nil when none is.
	probing *probeCall
}

// probeCall is one probe of the daemon; h is set before done is closed.
type probeCall struct {
	done chan struct{}
	h    Health
}

// Health is the last known state of the daemon connection.
type Health struct {
	// Ready is true when the daemon answered the last ping and speaks an
	// API version Berth supports.
	Ready bool
	// Reason says why Ready is false.
	Reason string
	// Since is when Ready last changed.
	Since time.Time
	// Daemon describes the daemon as of the last successful connection.
	Daemon DaemonInfo
}

// DaemonInfo is what Berth needs to know about the daemon it talks to.
type DaemonInfo struct {
	Version       string `json:"version"`
	APIVersion    string `json:"apiVersion"`
	MinAPIVersion string `json:"minAPIVersion"`
	// NegotiatedAPIVersion is the version Berth's requests use.
	NegotiatedAPIVersion string   `json:"negotiatedAPIVersion"`
	CgroupDriver         string   `json:"cgroupDriver"`
	CgroupVersion        string   `json:"cgroupVersion"`
	Runtimes             []string `json:"runtimes"`
	DefaultRuntime       string   `json:"defaultRuntime"`
	RootDir              string   `json:"rootDir"`
	StorageDriver        string   `json:"storageDriver"`
	// ContainerdImageStore is true when images live in containerd's store,
	// where an image's id is its manifest or index digest.
	ContainerdImageStore bool `json:"containerdImageStore"`
	// ContainerdAddress is the socket of the containerd Docker uses: one
	// it manages itself (under its exec root) or the system's.
	ContainerdAddress string   `json:"containerdAddress,omitempty"`
	LiveRestore       bool     `json:"liveRestore"`
	SecurityOptions   []string `json:"securityOptions"`
	CDISpecDirs       []string `json:"cdiSpecDirs,omitempty"`
	// Experimental is true when the daemon runs in experimental mode,
	// which its checkpoint API needs.
	Experimental bool `json:"experimental"`
	// RROMountRuntimes are the runtimes that can make recursively
	// read-only mounts (their OCI features list "rro"; reported from API
	// 1.44).
	RROMountRuntimes []string `json:"rroMountRuntimes,omitempty"`
	// UsernsWrapper says why Berth's OCI runtime wrapper (runtime
	// berth-userns) cannot run pods with user namespaces of their own on
	// this daemon, from what the runtime reports in its OCI features; ""
	// when it can.
	UsernsWrapper   string `json:"usernsWrapper,omitempty"`
	KernelVersion   string `json:"kernelVersion"`
	OperatingSystem string `json:"operatingSystem"`
	NCPU            int    `json:"ncpu"`
	MemTotal        int64  `json:"memTotal"`
}

// APIAtLeast reports whether the negotiated API version is v or newer.
func (d DaemonInfo) APIAtLeast(v string) bool {
	return d.NegotiatedAPIVersion != "" && versions.GreaterThanOrEqualTo(d.NegotiatedAPIVersion, v)
}

// HasSecurityOption reports whether the daemon lists a security option with
// this name (e.g. "userns", "rootless", "seccomp").
func (d DaemonInfo) HasSecurityOption(name string) bool {
	for _, o := range d.SecurityOptions {
		if o == name || strings.HasPrefix(o, "name="+name) {
			return true
		}
	}
	return false
}

// New returns a client for the daemon at opts.Endpoint. It does not contact
// the daemon: Run does, and keeps the connection's health current.
func New(opts Options) (*Client, error) {
	api, err := newAPI(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Client{
		endpoint: opts.Endpoint,
		timeout:  opts.RequestTimeout,
		log:      logger.With("component", "docker"),
		health:   Health{Reason: "Docker has not been contacted yet", Since: time.Now()},
	}
	c.current.Store(api)
	return c, nil
}

func newAPI(endpoint string) (*client.Client, error) {
	api, err := client.New(append([]client.Opt{client.WithHost(endpoint), client.WithUserAgent("berth")}, timingHooks()...)...)
	if err != nil {
		return nil, fmt.Errorf("docker endpoint %q: %w", endpoint, err)
	}
	return api, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() error { return c.api().Close() }

// api returns the moby client in use.
func (c *Client) api() *client.Client { return c.current.Load() }

// API returns the underlying moby client for the few callers (tests,
// benchmarks, tools) that need a call this package does not wrap.
func (c *Client) API() *client.Client { return c.api() }

// Health returns the last known state of the connection.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// OnHealthChange registers fn to be called (in its own goroutine) every
// time Ready changes, including the first successful connection.
func (c *Client) OnHealthChange(fn func(Health)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners = append(c.listeners, fn)
}

// Run keeps the connection's health current until ctx ends: it pings the
// daemon, backs off while it is away, and renegotiates the API version and
// rereads the daemon's configuration whenever it comes back.
func (c *Client) Run(ctx context.Context) {
	const (
		upInterval = 5 * time.Second
		minBackoff = 250 * time.Millisecond
		maxBackoff = 5 * time.Second
	)
	backoff := minBackoff
	for {
		h := c.Probe(ctx)
		wait := upInterval
		if !h.Ready {
			wait = backoff
			backoff = min(backoff*2, maxBackoff)
		} else {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// pingTimeout bounds one ping.
func (c *Client) pingTimeout() time.Duration { return min(c.timeout, 10*time.Second) }

// slowPingsTolerated is how many consecutive pings of an up daemon may time
// out before Berth takes it as down.
const slowPingsTolerated = 1

// Probe pings the daemon now and updates Health. After an outage (or on the
// first contact) it renegotiates the API version and rereads the daemon's
// info, since the daemon may have been upgraded or reconfigured meanwhile.
//
// Callers arriving while a probe is in flight share its result rather than
// queueing probes of their own: on a busy node kubelet's Status calls, the
// health loop and calls that found Docker away all probe at once. The probe
// runs to the end of its own time limits whatever its callers do, so a
// caller that gives up (its ctx ends; it then gets the last known health)
// never turns into a verdict on Docker.
func (c *Client) Probe(ctx context.Context) Health {
	c.mu.Lock()
	p := c.probing
	if p == nil {
		p = &probeCall{done: make(chan struct{})}
		c.probing = p
		var h Health
		pctx := context.WithoutCancel(ctx)
		panics.GoThen(pctx, panics.Docker, func() error {
			h = c.probe(pctx)
			return nil
		}, func(err error) {
			if err != nil {
				h = c.Health() // a panic is no verdict on Docker
			}
			c.mu.Lock()
			p.h = h
			c.probing = nil
			c.mu.Unlock()
			close(p.done)
		})
	}
	c.mu.Unlock()
	select {
	case <-p.done:
		return p.h
	case <-ctx.Done():
		return c.Health()
	}
}

// probe is one probe; its time limits start when it does.
func (c *Client) probe(ctx context.Context) Health {
	pingCtx, cancel := context.WithTimeout(ctx, c.pingTimeout())
	defer cancel()
	prev := c.Health()
	if prev.Ready {
		ping, err := c.api().Ping(pingCtx, client.PingOptions{})
		if err != nil && errors.Is(err, context.DeadlineExceeded) && c.slowPings < slowPingsTolerated {
			// A daemon that is up but overloaded answers late: turning
			// one late ping into Unavailable for every call would make
			// slowness an outage. A refused connection (Docker stopped)
			// is not tolerated.
			c.slowPings++
			c.log.Warn("Docker did not answer a ping in time; still taking it as up", "limit", c.pingTimeout(), "consecutive", c.slowPings)
			return prev
		}
		c.slowPings = 0
		if err != nil {
			return c.setHealth(false, "Docker is not answering: "+errorMessage(err), prev.Daemon)
		}
		if ping.APIVersion == "" || ping.APIVersion == prev.Daemon.APIVersion {
			return prev
		}
		// The daemon was replaced between two pings (an upgrade or
		// downgrade): fall through and renegotiate.
		c.log.Info("Docker's API version changed", "from", prev.Daemon.APIVersion, "to", ping.APIVersion)
	}
	api, err := newAPI(c.endpoint)
	if err != nil {
		return c.setHealth(false, err.Error(), prev.Daemon)
	}
	ping, err := api.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
	// NOTE: a daemon older than the moby client's own minimum answers the
	// ping but fails negotiation, so the version check comes before the
	// error check: the reason must say "too old", not "not answering".
	if problem := apiVersionProblem(ping.APIVersion); problem != "" {
		return c.setHealth(false, problem, prev.Daemon)
	}
	if err != nil {
		return c.setHealth(false, "Docker is not answering: "+errorMessage(err), prev.Daemon)
	}
	// Docker answered: reading its configuration gets the longer limit of
	// any call, since an overloaded daemon is slow at this (it counts its
	// containers and images) long before it is slow to answer a ping.
	infoCtx, cancelInfo := context.WithTimeout(ctx, c.timeout)
	defer cancelInfo()
	info, err := readDaemonInfo(infoCtx, api)
	if err != nil {
		// A daemon whose minimum API is newer than Berth's client
		// rejects every versioned call: the reason names the version
		// Berth spoke, next to Docker's message.
		return c.setHealth(false, fmt.Sprintf("reading Docker's configuration (API %s): %s", api.ClientVersion(), errorMessage(err)), prev.Daemon)
	}
	old := c.current.Swap(api)
	if old != api {
		// Calls still in flight on the old client finish on their own
		// connections; idle ones are released.
		_ = old.Close()
	}
	return c.setHealth(true, "", info)
}

// apiVersionProblem says why Berth cannot use a daemon whose newest API
// version is daemonAPI (from its ping), or "" when it can. An empty version
// (not reported) is not refused here: the client then speaks its newest
// version, and a daemon that rejects it says so on the next call.
func apiVersionProblem(daemonAPI string) string {
	if daemonAPI == "" {
		return ""
	}
	if !apiVersionPattern.MatchString(daemonAPI) {
		return fmt.Sprintf("Docker reported API version %q, which Berth cannot read", daemonAPI)
	}
	if versions.LessThan(daemonAPI, MinAPIVersion) {
		return fmt.Sprintf("Docker API %s is older than %s, the oldest Berth supports (Docker 20.10): upgrade Docker", daemonAPI, MinAPIVersion)
	}
	return ""
}

var apiVersionPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

func readDaemonInfo(ctx context.Context, api *client.Client) (DaemonInfo, error) {
	ver, err := api.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return DaemonInfo{}, err
	}
	res, err := api.Info(ctx, client.InfoOptions{})
	if err != nil {
		return DaemonInfo{}, err
	}
	info := res.Info
	d := DaemonInfo{
		Version:              ver.Version,
		APIVersion:           ver.APIVersion,
		MinAPIVersion:        ver.MinAPIVersion,
		NegotiatedAPIVersion: api.ClientVersion(),
		CgroupDriver:         info.CgroupDriver,
		CgroupVersion:        info.CgroupVersion,
		DefaultRuntime:       info.DefaultRuntime,
		RootDir:              info.DockerRootDir,
		StorageDriver:        info.Driver,
		LiveRestore:          info.LiveRestoreEnabled,
		SecurityOptions:      info.SecurityOptions,
		CDISpecDirs:          info.CDISpecDirs,
		Experimental:         info.ExperimentalBuild,
		RROMountRuntimes:     rroRuntimes(info.Runtimes),
		UsernsWrapper:        usernsWrapperStatus(info.Runtimes),
		KernelVersion:        info.KernelVersion,
		OperatingSystem:      info.OperatingSystem,
		NCPU:                 info.NCPU,
		MemTotal:             info.MemTotal,
	}
	if info.Containerd != nil {
		d.ContainerdAddress = info.Containerd.Address
	}
	if d.CgroupVersion == "" {
		d.CgroupVersion = "1"
	}
	for name := range info.Runtimes {
		d.Runtimes = append(d.Runtimes, name)
	}
	sort.Strings(d.Runtimes)
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && strings.HasPrefix(kv[1], "io.containerd.snapshotter") {
			d.ContainerdImageStore = true
		}
	}
	return d, nil
}

func (c *Client) setHealth(ready bool, reason string, daemon DaemonInfo) Health {
	c.mu.Lock()
	prev := c.health
	h := Health{Ready: ready, Reason: reason, Since: prev.Since, Daemon: daemon}
	changed := prev.Ready != ready
	if changed {
		h.Since = time.Now()
	}
	c.health = h
	listeners := append([]func(Health){}, c.listeners...)
	c.mu.Unlock()

	if changed {
		if ready {
			c.log.Info("connected to Docker", "version", daemon.Version, "api", daemon.NegotiatedAPIVersion,
				"cgroupDriver", daemon.CgroupDriver, "storage", daemon.StorageDriver, "containerdImageStore", daemon.ContainerdImageStore)
		} else {
			c.log.Warn("Docker is unavailable", "reason", reason)
		}
		for _, fn := range listeners {
			panics.Go(context.Background(), panics.Docker, func() { fn(h) })
		}
	} else if !ready && reason != prev.Reason {
		c.log.Debug("Docker still unavailable", "reason", reason)
	}
	return h
}

// WithTimeout returns ctx bounded by the runtime request timeout, for a call
// that is not long-running.
func (c *Client) WithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Classify wraps a Docker error with the Berth sentinel matching its kind,
// keeping Docker's message. Connection failures become ErrUnavailable.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	case client.IsErrConnectionFailed(err):
		sentinel = errdefs.ErrUnavailable
	case cerrdefs.IsNotFound(err):
		sentinel = errdefs.ErrNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		sentinel = errdefs.ErrAlreadyExists
	case cerrdefs.IsInvalidArgument(err):
		sentinel = errdefs.ErrInvalidArgument
	case cerrdefs.IsUnauthorized(err):
		sentinel = errdefs.ErrUnauthenticated
	case cerrdefs.IsPermissionDenied(err):
		sentinel = errdefs.ErrPermissionDenied
	case cerrdefs.IsFailedPrecondition(err), cerrdefs.IsNotModified(err):
		sentinel = errdefs.ErrFailedPrecondition
	case cerrdefs.IsUnavailable(err):
		sentinel = errdefs.ErrUnavailable
	case cerrdefs.IsNotImplemented(err):
		sentinel = errdefs.ErrUnimplemented
	case cerrdefs.IsDeadlineExceeded(err):
		sentinel = errdefs.ErrDeadlineExceeded
	case cerrdefs.IsInternal(err), cerrdefs.IsDataLoss(err), cerrdefs.IsUnknown(err):
		sentinel = errdefs.ErrInternal
	default:
		return err
	}
	return &classified{err: err, kind: sentinel}
}

type classified struct {
	err  error
	kind error
}

func (e *classified) Error() string { return errorMessage(e.err) }
func (e *classified) Unwrap() []error {
	return []error{e.err, e.kind}
}

// errorMessage strips the noise moby's client puts before daemon messages.
func errorMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "Error response from daemon: ")
}

// containerd's own defaults: the socket and root of a containerd run as a
// system service (what Docker's packages install and Docker then uses).
const (
	containerdDefaultAddress = "/run/containerd/containerd.sock"
	containerdDefaultRoot    = "/var/lib/containerd"
)

// ImageStorageDirs returns where the daemon may keep image layers and
// containers' writable layers, most likely first; the last is always the
// daemon's root directory. The caller takes the first that exists.
//
// With the classic store that is the storage driver's directory under the
// root (/var/lib/docker/overlay2). With the containerd image store it is
// containerd's snapshotter directory, io.containerd.snapshotter.v1.<name>
// under containerd's root: <docker root>/containerd/daemon when Docker runs
// its own containerd, containerd's default root (/var/lib/containerd) when
// Docker uses the system's, which it does when one listens on containerd's
// default socket. A system containerd configured with another root is not
// found (Docker does not report containerd's root): the image filesystem is
// then taken to be Docker's root's.
func (d DaemonInfo) ImageStorageDirs() []string {
	var dirs []string
	switch {
	case d.StorageDriver == "":
	case !d.ContainerdImageStore:
		dirs = append(dirs, filepath.Join(d.RootDir, d.StorageDriver))
	default:
		snapshotter := "io.containerd.snapshotter.v1." + d.StorageDriver
		managed := filepath.Join(d.RootDir, "containerd", "daemon", snapshotter)
		system := filepath.Join(containerdDefaultRoot, snapshotter)
		// /var/run is /run on every current distribution.
		addr := strings.TrimPrefix(filepath.Clean(strings.TrimPrefix(d.ContainerdAddress, "unix://")), "/var")
		if addr == containerdDefaultAddress {
			dirs = append(dirs, system, managed)
		} else {
			dirs = append(dirs, managed, system)
		}
	}
	return append(dirs, d.RootDir)
}
