// Package config holds Berth's configuration: the defaults, the command-line
// flags (named as cri-dockerd names them where the meaning is the same) and
// their validation. It builds nothing.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/dockerspec"
)

// Defaults that other packages and the docs refer to.
const (
	DefaultEndpoint       = "unix:///run/berth/berth.sock"
	DefaultDockerEndpoint = "unix:///var/run/docker.sock"
	DefaultRootDir        = "/var/lib/berth"
	// DefaultPauseImage is Berth's own pause image. No registry serves it:
	// Berth builds it locally from its own pause program when it is absent.
	DefaultPauseImage = "berth.local/pause:1.0"
)

// Config is everything `berth serve` needs to know.
type Config struct {
	// Endpoint is where the CRI gRPC server listens: unix:///path or fd://[name].
	Endpoint string
	// SocketGroup owns the CRI socket (mode 0660); empty keeps root's group.
	SocketGroup string
	// DockerEndpoint is the Docker Engine API address (unix://, tcp://).
	DockerEndpoint string
	// RootDir holds Berth's durable state: checkpoints, log positions.
	RootDir string
	// PodInfraContainerImage is the pause image of every pod sandbox.
	PodInfraContainerImage string
	// PinnedImages are reported pinned (never garbage-collected by kubelet).
	PinnedImages []string

	// NetworkPlugin is "cni" (pod networking via CNI) or "" (Docker's bridge).
	NetworkPlugin string
	CNIBinDirs    []string
	CNIConfDir    string
	CNICacheDir   string
	// NetworkPluginMTU, if non-zero, is passed to CNI plugins as runtime config.
	NetworkPluginMTU int
	// PodCIDR is the initial pod CIDR, as kubelet sets it with UpdateRuntimeConfig.
	PodCIDR string

	// RuntimeRequestTimeout bounds every Docker call that is not long-running.
	RuntimeRequestTimeout time.Duration
	// ImagePullProgressDeadline cancels a pull that makes no progress this long.
	ImagePullProgressDeadline time.Duration

	StreamingBindAddr              string
	StreamingConnectionIdleTimeout time.Duration
	StreamingTLSCertFile           string
	StreamingTLSKeyFile            string

	// DockerLogMaxSize and DockerLogMaxFile bound Docker's own json-file
	// copy of each container's output (Berth writes the CRI log kubelet
	// reads; Docker's copy keeps `docker logs` working).
	DockerLogMaxSize string
	DockerLogMaxFile int

	// MetricsAddress serves /metrics, /healthz and pprof; empty disables it.
	MetricsAddress string
	LogLevel       string
	LogFormat      string
	// ShutdownTimeout bounds how long in-flight calls may drain on SIGTERM.
	ShutdownTimeout time.Duration

	// OOMScoreAdjPolicy is "auto", "clamp" or "exact": whether negative
	// oom_score_adj values are clamped to what the host allows.
	OOMScoreAdjPolicy string

	// Accepted for cri-dockerd compatibility; see docs/configuration.md.
	HairpinMode    string
	IPv6DualStack  bool
	RuntimeCgroups string
}

// Default returns the configuration `berth serve` uses without flags.
func Default() Config {
	return Config{
		Endpoint:                       DefaultEndpoint,
		DockerEndpoint:                 DefaultDockerEndpoint,
		RootDir:                        DefaultRootDir,
		PodInfraContainerImage:         DefaultPauseImage,
		NetworkPlugin:                  "cni",
		CNIBinDirs:                     []string{"/opt/cni/bin", "/usr/lib/cni"},
		CNIConfDir:                     "/etc/cni/net.d",
		CNICacheDir:                    "/var/lib/cni/cache",
		RuntimeRequestTimeout:          2 * time.Minute,
		ImagePullProgressDeadline:      time.Minute,
		StreamingBindAddr:              "127.0.0.1:0",
		DockerLogMaxSize:               "10m",
		DockerLogMaxFile:               3,
		StreamingConnectionIdleTimeout: 4 * time.Hour,
		LogLevel:                       "info",
		LogFormat:                      "text",
		ShutdownTimeout:                15 * time.Second,
		OOMScoreAdjPolicy:              "auto",
		HairpinMode:                    "hairpin-veth",
	}
}

// BindFlags registers every `berth serve` flag on fs, writing into c. The
// values already in c are the flags' defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Endpoint, "container-runtime-endpoint", c.Endpoint,
		"Where the CRI server listens: unix:///path/to.sock, or fd:// for systemd socket activation.")
	fs.StringVar(&c.SocketGroup, "socket-group", c.SocketGroup,
		"Group that owns the CRI socket (mode 0660). Empty keeps root's group.")
	fs.StringVar(&c.DockerEndpoint, "docker-endpoint", c.DockerEndpoint,
		"Docker Engine API endpoint.")
	fs.StringVar(&c.RootDir, "root-dir", c.RootDir,
		"Directory for Berth's durable state (sandbox checkpoints, log positions).")
	fs.StringVar(&c.RootDir, "cri-dockerd-root-directory", c.RootDir,
		"Alias of --root-dir, for cri-dockerd unit files.")
	fs.StringVar(&c.PodInfraContainerImage, "pod-infra-container-image", c.PodInfraContainerImage,
		"Image of every pod's sandbox (pause) container. Berth's own (the default) is built locally; another is pulled when absent, with the credentials in Docker's config.json, and Berth's pause program stands in for it if the pull fails.")
	fs.StringSliceVar(&c.PinnedImages, "pinned-images", c.PinnedImages,
		"Comma-separated images reported as pinned, so kubelet never garbage-collects them.")
	fs.StringVar(&c.NetworkPlugin, "network-plugin", c.NetworkPlugin,
		`Pod networking: "cni", or "" for Docker's default bridge (single-node development only).`)
	fs.StringSliceVar(&c.CNIBinDirs, "cni-bin-dir", c.CNIBinDirs,
		"Comma-separated directories searched for CNI plugin binaries.")
	fs.StringVar(&c.CNIConfDir, "cni-conf-dir", c.CNIConfDir,
		"Directory searched for CNI network configuration; the first .conflist/.conf/.json file by name is used.")
	fs.StringVar(&c.CNICacheDir, "cni-cache-dir", c.CNICacheDir,
		"Directory where CNI stores its cache of results.")
	fs.IntVar(&c.NetworkPluginMTU, "network-plugin-mtu", c.NetworkPluginMTU,
		"MTU passed to CNI plugins as runtime config; 0 leaves it to the network configuration.")
	fs.StringVar(&c.PodCIDR, "pod-cidr", c.PodCIDR,
		"Initial pod CIDR (IPv4, IPv6, or both comma-separated) until kubelet sets one with UpdateRuntimeConfig; passed to CNI plugins that declare the ipRanges capability.")
	fs.DurationVar(&c.RuntimeRequestTimeout, "runtime-request-timeout", c.RuntimeRequestTimeout,
		"Upper bound on every Docker call except long-running ones (pull, exec, attach, logs).")
	fs.DurationVar(&c.ImagePullProgressDeadline, "image-pull-progress-deadline", c.ImagePullProgressDeadline,
		"Cancel an image pull that makes no progress for this long.")
	fs.StringVar(&c.StreamingBindAddr, "streaming-bind-addr", c.StreamingBindAddr,
		"host:port of the exec/attach/port-forward streaming server; a bare host binds a random port.")
	fs.DurationVar(&c.StreamingConnectionIdleTimeout, "streaming-connection-idle-timeout", c.StreamingConnectionIdleTimeout,
		"Close a streaming connection idle for this long.")
	fs.StringVar(&c.StreamingTLSCertFile, "streaming-tls-cert-file", c.StreamingTLSCertFile,
		"Serve streaming over TLS with this certificate (needs --streaming-tls-key-file).")
	fs.StringVar(&c.StreamingTLSKeyFile, "streaming-tls-key-file", c.StreamingTLSKeyFile,
		"Private key for --streaming-tls-cert-file.")
	fs.StringVar(&c.DockerLogMaxSize, "docker-log-max-size", c.DockerLogMaxSize,
		"Size at which Docker rotates its own json-file copy of a container's output (kubelet's log files are separate).")
	fs.IntVar(&c.DockerLogMaxFile, "docker-log-max-file", c.DockerLogMaxFile,
		"How many rotated files of Docker's json-file copy to keep.")
	fs.StringVar(&c.MetricsAddress, "metrics-address", c.MetricsAddress,
		"host:port serving /metrics, /healthz and /debug/pprof; empty disables it (127.0.0.1 suggested).")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "Log level: debug, info, warn or error.")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "Log format: text or json.")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout,
		"On SIGTERM/SIGINT, how long in-flight calls may finish before they are cut off.")
	fs.StringVar(&c.OOMScoreAdjPolicy, "oom-score-adj-policy", c.OOMScoreAdjPolicy,
		`Negative oom_score_adj: "auto" clamps it when the host cannot lower it (no CAP_SYS_RESOURCE), "clamp" always clamps, "exact" never does.`)
	fs.StringVar(&c.HairpinMode, "hairpin-mode", c.HairpinMode,
		"Accepted for cri-dockerd compatibility, with no effect (a warning says so): with CNI the bridge plugin's hairpinMode in the conflist decides.")
	fs.BoolVar(&c.IPv6DualStack, "ipv6-dual-stack", c.IPv6DualStack,
		"Accepted for cri-dockerd compatibility, with no effect (a warning says so): a pod gets the IP families its conflist's IPAM ranges give, and Berth reports every one.")
	fs.StringVar(&c.RuntimeCgroups, "runtime-cgroups", c.RuntimeCgroups,
		"Cgroup to create and run the runtime in, as cri-dockerd: Berth, dockerd and its containerd, with a memory limit of 70% of the machine's. An absolute path (/berth-runtime), or a systemd slice name (berth-runtime.slice).")
}

// IgnoredFlag is a flag Berth accepts for cri-dockerd compatibility and set
// to something other than its default, which has no effect on Berth.
type IgnoredFlag struct {
	Flag  string // e.g. "--hairpin-mode=promiscuous-bridge"
	Why   string // what decides instead
	Where string // where to set it
}

// IgnoredFlags lists the compatibility flags c sets to no effect: a
// cri-dockerd unit file must start Berth unchanged, but nothing it says
// may be silently dropped (berth serve logs each, berth doctor reports
// each).
func (c *Config) IgnoredFlags() []IgnoredFlag {
	var out []IgnoredFlag
	if c.HairpinMode != Default().HairpinMode {
		out = append(out, IgnoredFlag{
			Flag:  "--hairpin-mode=" + c.HairpinMode,
			Why:   "with CNI the network configuration decides whether a pod reaches itself through its service (in Docker-bridge mode, Docker does)",
			Where: `the bridge plugin's "hairpinMode": true in the CNI conflist`,
		})
	}
	if c.IPv6DualStack != Default().IPv6DualStack {
		out = append(out, IgnoredFlag{
			Flag:  fmt.Sprintf("--ipv6-dual-stack=%v", c.IPv6DualStack),
			Why:   "a pod gets the IP families its CNI configuration's IPAM ranges give it, and Berth reports every one",
			Where: "an IPv4 and an IPv6 range in the conflist's IPAM (or a dual-stack pod CIDR through the ipRanges capability)",
		})
	}
	return out
}

// Validate reports every invalid value in c, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}

	if _, _, err := ParseEndpoint(c.Endpoint); err != nil {
		bad("container-runtime-endpoint", "%v", err)
	}
	if c.SocketGroup != "" {
		if _, err := LookupGroup(c.SocketGroup); err != nil {
			bad("socket-group", "%v", err)
		}
	}
	if u, err := url.Parse(c.DockerEndpoint); err != nil || u.Scheme == "" {
		bad("docker-endpoint", "%q is not an address like unix:///var/run/docker.sock", c.DockerEndpoint)
	} else if u.Scheme != "unix" && u.Scheme != "tcp" && u.Scheme != "http" && u.Scheme != "https" {
		bad("docker-endpoint", "scheme %q is not supported (unix, tcp, http, https)", u.Scheme)
	}
	if c.RootDir == "" || !filepath.IsAbs(c.RootDir) {
		bad("root-dir", "%q must be an absolute path", c.RootDir)
	}
	if strings.TrimSpace(c.PodInfraContainerImage) == "" {
		bad("pod-infra-container-image", "must not be empty")
	} else if _, err := dockerspec.ParseImageRef(c.PodInfraContainerImage); err != nil {
		bad("pod-infra-container-image", "%v", err)
	}
	for _, ref := range c.PinnedImages {
		if _, err := dockerspec.ParseImageRef(ref); err != nil {
			bad("pinned-images", "%v", err)
		}
	}
	switch c.NetworkPlugin {
	case "cni", "":
	default:
		bad("network-plugin", `%q is not supported: use "cni", or "" for Docker's bridge`, c.NetworkPlugin)
	}
	if c.NetworkPlugin == "cni" {
		if len(c.CNIBinDirs) == 0 {
			bad("cni-bin-dir", "must name at least one directory")
		}
		if c.CNIConfDir == "" {
			bad("cni-conf-dir", "must not be empty")
		}
	}
	if c.NetworkPluginMTU < 0 || c.NetworkPluginMTU > 65535 {
		bad("network-plugin-mtu", "%d is out of range 0-65535", c.NetworkPluginMTU)
	}
	if c.PodCIDR != "" {
		for _, cidr := range strings.Split(c.PodCIDR, ",") {
			if _, _, err := net.ParseCIDR(strings.TrimSpace(cidr)); err != nil {
				bad("pod-cidr", "%q is not a CIDR", cidr)
			}
		}
	}
	if c.RuntimeRequestTimeout <= 0 {
		bad("runtime-request-timeout", "must be positive")
	}
	if c.ImagePullProgressDeadline <= 0 {
		bad("image-pull-progress-deadline", "must be positive")
	}
	if _, err := StreamingAddr(c.StreamingBindAddr); err != nil {
		bad("streaming-bind-addr", "%v", err)
	}
	if c.StreamingConnectionIdleTimeout < 0 {
		bad("streaming-connection-idle-timeout", "must not be negative")
	}
	if (c.StreamingTLSCertFile == "") != (c.StreamingTLSKeyFile == "") {
		bad("streaming-tls-cert-file", "--streaming-tls-cert-file and --streaming-tls-key-file go together")
	}
	if !regexp.MustCompile(`^[0-9]+[kmg]?$`).MatchString(c.DockerLogMaxSize) {
		bad("docker-log-max-size", "%q is not a size like 50m", c.DockerLogMaxSize)
	}
	if c.DockerLogMaxFile < 2 {
		// With one file Docker truncates it in place, and lines Berth has
		// not forwarded yet are lost.
		bad("docker-log-max-file", "must be at least 2")
	}
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			bad("metrics-address", "%q is not host:port", c.MetricsAddress)
		}
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		bad("log-level", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log-format", "%q is not text or json", c.LogFormat)
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown-timeout", "must not be negative")
	}
	switch c.OOMScoreAdjPolicy {
	case "auto", "clamp", "exact":
	default:
		bad("oom-score-adj-policy", "%q is not auto, clamp or exact", c.OOMScoreAdjPolicy)
	}
	switch c.HairpinMode {
	case "promiscuous-bridge", "hairpin-veth", "none":
	default:
		bad("hairpin-mode", "%q is not promiscuous-bridge, hairpin-veth or none", c.HairpinMode)
	}
	if c.RuntimeCgroups != "" {
		if _, err := cgroups.ResolveRuntimeName(c.RuntimeCgroups); err != nil {
			bad("runtime-cgroups", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// ParseEndpoint splits a CRI endpoint into its scheme ("unix" or "fd") and
// address (a socket path, or the optional fd:// listener name).
func ParseEndpoint(endpoint string) (scheme, addr string, err error) {
	scheme, addr, ok := strings.Cut(endpoint, "://")
	if !ok {
		return "", "", fmt.Errorf("%q is not unix:///path or fd://", endpoint)
	}
	switch scheme {
	case "unix":
		if !filepath.IsAbs(addr) {
			return "", "", fmt.Errorf("%q: the socket path must be absolute", endpoint)
		}
		return scheme, filepath.Clean(addr), nil
	case "fd":
		return scheme, addr, nil
	default:
		return "", "", fmt.Errorf("%q: scheme %q is not supported (unix, fd)", endpoint, scheme)
	}
}

// StreamingAddr normalises --streaming-bind-addr: a bare host gets port 0
// (any free port).
func StreamingAddr(addr string) (string, error) {
	if addr == "" {
		return "127.0.0.1:0", nil
	}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("%q: port %q is not a number", addr, port)
		}
		return net.JoinHostPort(host, port), nil
	}
	if ip := net.ParseIP(strings.Trim(addr, "[]")); ip != nil {
		return net.JoinHostPort(ip.String(), "0"), nil
	}
	return "", fmt.Errorf("%q is not host:port or an IP address", addr)
}

// ParseLogLevel maps --log-level to a slog level. "warning", "fatal" and
// "panic" are accepted as cri-dockerd (logrus) spells them.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug", "trace":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal", "panic":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// LookupGroup resolves a group name or numeric id to a gid.
func LookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}
