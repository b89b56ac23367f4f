// Package doctor checks that a node is set up to run pods through Berth:
// Docker, kubelet, CNI, the socket, and what else on the node depends on
// Docker. Each check is a small function returning findings; Run collects
// them into a report with a fix for every problem.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/kubeletcfg"
)

// Status is how bad a finding is. The order matters: Worst picks the highest.
type Status int

// The statuses, best first.
const (
	Pass Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Warn:
		return "warn"
	default:
		return "fail"
	}
}

// MarshalJSON writes the status as its name.
func (s Status) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a status name.
func (s *Status) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	switch name {
	case "pass":
		*s = Pass
	case "warn":
		*s = Warn
	case "fail":
		*s = Fail
	default:
		return fmt.Errorf("unknown status %q", name)
	}
	return nil
}

// ExitCode is the process exit code for a report whose worst finding is s:
// 0 pass, 1 warn, 2 fail.
func (s Status) ExitCode() int { return int(s) }

// Finding is the result of one check.
type Finding struct {
	// Check is the check's stable name, e.g. "cgroup-driver".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix says what to do about it; empty for a pass.
	Fix string `json:"fix,omitempty"`
}

// Report is every finding of one run.
type Report struct {
	Findings []Finding `json:"findings"`
	Worst    Status    `json:"worst"`
}

// Find returns the findings of the named check.
func (r Report) Find(check string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

// DefaultDaemonJSON is where Docker reads its configuration.
const DefaultDaemonJSON = "/etc/docker/daemon.json"

// DefaultSocket is the socket berth.socket listens on, checked when Berth
// is configured for socket activation (fd://).
const DefaultSocket = "/run/berth/berth.sock"

// DefaultLeftoverPaths are where dockershim and cri-dockerd keep state,
// sockets and unit files.
var DefaultLeftoverPaths = []string{
	"/var/lib/dockershim",
	"/var/run/dockershim.sock",
	"/var/lib/cri-dockerd",
	"/run/cri-dockerd.sock",
	"/var/run/cri-dockerd.sock",
	"/etc/systemd/system/cri-docker.service",
	"/etc/systemd/system/cri-docker.socket",
	"/lib/systemd/system/cri-docker.service",
	"/lib/systemd/system/cri-docker.socket",
	"/usr/lib/systemd/system/cri-docker.service",
	"/usr/lib/systemd/system/cri-docker.socket",
}

// Options say what to check and where to look. Every path can be pointed
// elsewhere, so tests check set-ups they build in temporary directories.
type Options struct {
	// Config is Berth's configuration: its socket, Docker endpoint, CNI
	// directories and pause image.
	Config config.Config
	// Socket is Berth's socket path; empty derives it from Config.Endpoint
	// (DefaultSocket for fd://).
	Socket string
	// Kubelet says where kubelet's files are.
	Kubelet kubeletcfg.Paths
	// DaemonJSON is Docker's daemon.json.
	DaemonJSON string
	// ProcRoot is where processes are listed (/proc).
	ProcRoot string
	// LeftoverPaths are checked for dockershim and cri-dockerd state.
	LeftoverPaths []string
}

// env is what the checks share: options and what was learned once.
type env struct {
	opts     Options
	docker   *docker.Client
	health   docker.Health
	info     *client.SystemInfoResult
	kubelet  kubeletcfg.Settings
	kubeErr  error
	socket   string
	endpoint string
}

// check is one check: it reads e and returns its findings.
type check func(ctx context.Context, e *env) []Finding

// checks run in this order, which is also the report's order.
var checks = []check{
	checkDocker,
	checkCgroupDriver,
	checkCNI,
	checkCompatFlags,
	checkPauseImage,
	checkBerthSocket,
	checkKubeletEndpoint,
	checkDockerSocketUsers,
	checkDockerSocketMounts,
	checkDaemonSettings,
	checkUserNamespaces,
	checkLeftovers,
}

// Run runs every check and returns the report.
func Run(ctx context.Context, opts Options) Report {
	if opts.DaemonJSON == "" {
		opts.DaemonJSON = DefaultDaemonJSON
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = kubeletcfg.DefaultProcRoot
	}
	if opts.Kubelet.ProcRoot == "" {
		opts.Kubelet.ProcRoot = opts.ProcRoot
	}
	if opts.LeftoverPaths == nil {
		opts.LeftoverPaths = DefaultLeftoverPaths
	}
	e := &env{opts: opts}
	e.socket, e.endpoint = berthSocket(opts)
	e.kubelet, e.kubeErr = kubeletcfg.Discover(opts.Kubelet)

	if d, err := docker.New(docker.Options{
		Endpoint:       opts.Config.DockerEndpoint,
		RequestTimeout: opts.Config.RuntimeRequestTimeout,
		Logger:         slog.New(slog.DiscardHandler),
	}); err == nil {
		e.docker = d
		defer d.Close()
		e.health = d.Probe(ctx)
		if e.health.Ready {
			if info, err := d.API().Info(ctx, client.InfoOptions{}); err == nil {
				e.info = &info
			}
		}
	} else {
		e.health = docker.Health{Reason: err.Error()}
	}

	var r Report
	for _, c := range checks {
		for _, f := range c(ctx, e) {
			r.Findings = append(r.Findings, f)
			r.Worst = max(r.Worst, f.Status)
		}
	}
	return r
}

func berthSocket(opts Options) (path, endpoint string) {
	if opts.Socket != "" {
		return opts.Socket, "unix://" + opts.Socket
	}
	scheme, addr, err := config.ParseEndpoint(opts.Config.Endpoint)
	if err != nil || scheme != "unix" {
		return DefaultSocket, "unix://" + DefaultSocket
	}
	return addr, "unix://" + addr
}

// WriteTable writes the report as a table, with the fix under each problem.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL")
	for _, f := range r.Findings {
		status := f.Status.String()
		if f.Status != Pass {
			status = strings.ToUpper(status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", status, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	counts := map[Status]int{}
	for _, f := range r.Findings {
		counts[f.Status]++
	}
	_, err := fmt.Fprintf(w, "\nsummary: %d pass, %d warn, %d fail\n", counts[Pass], counts[Warn], counts[Fail])
	return err
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func pass(check, detail string) Finding { return Finding{Check: check, Status: Pass, Detail: detail} }
func warn(check, detail, fix string) Finding {
	return Finding{Check: check, Status: Warn, Detail: detail, Fix: fix}
}
func fail(check, detail, fix string) Finding {
	return Finding{Check: check, Status: Fail, Detail: detail, Fix: fix}
}

// dockerDown is the finding of a check that needs Docker when it is away.
func dockerDown(check string) []Finding {
	return []Finding{warn(check, "not checked: Docker is not reachable", "fix the docker check first")}
}
