package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/kubeletcfg"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/sockdiag"
)

var errNotFound = errdefs.ErrNotFound

// checkCNI: a network configuration exists, parses, and its plugins exist.
func checkCNI(_ context.Context, e *env) []Finding {
	const name = "cni"
	c := e.opts.Config
	if c.NetworkPlugin == "" {
		return []Finding{warn(name, "CNI is off (--network-plugin=\"\"): pods use Docker's default bridge, which is for single-node development only",
			"set network-plugin = \"cni\" and install a network (e.g. your cluster's CNI add-on)")}
	}
	list, file, err := network.LoadConfig(c.CNIConfDir, c.CNIBinDirs)
	if err != nil {
		fix := fmt.Sprintf("install your cluster's network add-on, or put a .conflist in %s", c.CNIConfDir)
		if file != "" {
			fix = fmt.Sprintf("install the missing plugins into one of %s (Debian: apt install containernetworking-plugins), or fix %s", strings.Join(c.CNIBinDirs, ", "), file)
		}
		return []Finding{fail(name, err.Error(), fix)}
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	return []Finding{pass(name, fmt.Sprintf("network %q from %s (plugins %s, all found)", list.Name, file, strings.Join(types, ", ")))}
}

// checkBerthSocket: Berth's socket exists with safe permissions and Berth
// answers on it.
func checkBerthSocket(ctx context.Context, e *env) []Finding {
	const name = "berth-socket"
	var out []Finding
	st, err := os.Stat(e.socket)
	if errors.Is(err, fs.ErrNotExist) {
		return []Finding{fail(name, fmt.Sprintf("%s does not exist: Berth is not serving", e.socket),
			"systemctl enable --now berth.socket berth.service (or start berth serve)")}
	}
	if err != nil {
		return []Finding{fail(name, err.Error(), "run berth doctor as root")}
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return []Finding{fail(name, fmt.Sprintf("%s is not a socket (%s)", e.socket, st.Mode()),
			"remove it and restart Berth")}
	}
	perm := st.Mode().Perm()
	gid := -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		gid = int(sys.Gid)
	}
	group := groupName(gid)
	switch {
	case perm&0o007 != 0:
		out = append(out, fail(name, fmt.Sprintf("%s has mode %04o: every user can drive the runtime (root on the node)", e.socket, perm),
			"set SocketMode=0660 in berth.socket, or restart berth serve (it creates the socket 0660)"))
	case e.opts.Config.SocketGroup != "":
		want, err := config.LookupGroup(e.opts.Config.SocketGroup)
		if err == nil && want != gid {
			out = append(out, warn(name, fmt.Sprintf("%s belongs to group %s, not %s", e.socket, group, e.opts.Config.SocketGroup),
				"set SocketGroup= in berth.socket, or --socket-group"))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := criVersion(ctx, e.socket)
	if err != nil {
		return append(out, fail(name, fmt.Sprintf("%s exists but CRI Version failed: %v", e.socket, err),
			"check Berth's log (journalctl -u berth) and the docker check"))
	}
	if len(out) == 0 {
		out = append(out, pass(name, fmt.Sprintf("%s (mode %04o, group %s) answers CRI %s: %s %s",
			e.socket, perm, group, v.RuntimeApiVersion, v.RuntimeName, v.RuntimeVersion)))
	}
	return out
}

func criVersion(ctx context.Context, socket string) (*runtimeapi.VersionResponse, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
}

func groupName(gid int) string {
	if gid < 0 {
		return "?"
	}
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// checkKubeletEndpoint: kubelet's configured runtime endpoint is Berth's.
func checkKubeletEndpoint(_ context.Context, e *env) []Finding {
	const name = "kubelet-endpoint"
	var out []Finding
	if e.kubeErr != nil {
		out = append(out, warn(name, "reading kubelet's files: "+e.kubeErr.Error(), "fix or point the --kubelet-* flags at the right files"))
	}
	ep, src := e.kubelet.Endpoint()
	switch {
	case src == nil && !e.kubelet.Found() && e.kubelet.Process == nil:
		out = append(out, warn(name, "no kubelet configuration or kubelet process found on this node",
			fmt.Sprintf("when you set kubelet up, give it --container-runtime-endpoint=%s (kubeadm: --cri-socket %s)", e.endpoint, e.endpoint)))
	case src == nil:
		out = append(out, fail(name, "kubelet's files set no runtime endpoint: kubelet uses its default (containerd's socket)",
			fmt.Sprintf("berth migrate, or set containerRuntimeEndpoint: %s in kubelet's configuration", e.endpoint)))
	case kubeletcfg.SameEndpoint(ep, e.endpoint):
		out = append(out, pass(name, fmt.Sprintf("kubelet's runtime endpoint is Berth's %s (%s %s)", e.endpoint, src.Kind, src.Path)))
	default:
		out = append(out, fail(name, fmt.Sprintf("kubelet's runtime endpoint is %s (%s %s), not Berth's %s", ep, src.Kind, src.Path, e.endpoint),
			"berth migrate (plans first; --yes to act)"))
	}
	// Lower-precedence places that disagree mislead whoever reads them next.
	for _, s := range e.kubelet.Sources {
		if src != nil && s.Endpoint != "" && s.Path != src.Path && !kubeletcfg.SameEndpoint(s.Endpoint, ep) {
			out = append(out, warn(name, fmt.Sprintf("%s %s also sets %s, overridden by %s", s.Kind, s.Path, s.Endpoint, src.Path),
				"make them agree (berth migrate rewrites every place)"))
		}
		if len(s.DockershimFlags) > 0 {
			out = append(out, warn(name, fmt.Sprintf("%s %s passes dockershim-only flags: --%s", s.Kind, s.Path, strings.Join(s.DockershimFlags, ", --")),
				"kubelet 1.24+ refuses most of them: remove them (berth migrate does); Berth takes the CNI ones as its own settings"))
		}
	}
	if p := e.kubelet.Process; p != nil && src != nil {
		if running := p.Flag(kubeletcfg.EndpointFlag); running != "" && !kubeletcfg.SameEndpoint(running, ep) {
			out = append(out, warn(name, fmt.Sprintf("the running kubelet (pid %d) uses %s; its files now say %s", p.PID, running, ep),
				"restart kubelet (systemctl restart kubelet) after draining the node"))
		}
	}
	return out
}

// checkDockerSocketUsers: processes connected to Docker's socket, other
// than Docker itself and Berth.
func checkDockerSocketUsers(_ context.Context, e *env) []Finding {
	const name = "docker-socket-users"
	path, ok := strings.CutPrefix(e.opts.Config.DockerEndpoint, "unix://")
	if !ok {
		return []Finding{pass(name, "Docker is reached over TCP; no socket to inspect")}
	}
	holders, err := sockdiag.Holders(e.opts.ProcRoot, path)
	if err != nil {
		return []Finding{warn(name, "listing socket connections: "+err.Error(), "run berth doctor as root")}
	}
	var others []string
	for _, h := range holders {
		if h.Serving || isDockerOrBerth(h.Comm) {
			continue
		}
		others = append(others, fmt.Sprintf("%s (pid %d)", h.Comm, h.PID))
	}
	if len(others) == 0 {
		return []Finding{pass(name, fmt.Sprintf("nothing but Docker's own tools and Berth is connected to %s", path))}
	}
	return []Finding{warn(name,
		fmt.Sprintf("%d process(es) connected to %s: %s", len(others), path, strings.Join(others, ", ")),
		"these keep working with Berth, since Docker stays; they can start and stop pods' containers behind kubelet's back — move them to the Kubernetes API, or off Docker before removing it")}
}

func isDockerOrBerth(comm string) bool {
	switch comm {
	case "dockerd", "containerd", "docker-proxy", "berth":
		return true
	}
	return false
}

// checkLeftovers: state, sockets, units and processes of dockershim and
// cri-dockerd.
func checkLeftovers(_ context.Context, e *env) []Finding {
	const name = "dockershim-leftovers"
	var out []Finding
	procs, _ := kubeletcfg.FindProcesses(e.opts.ProcRoot, "cri-dockerd")
	for _, p := range procs {
		out = append(out, warn(name, fmt.Sprintf("cri-dockerd is running (pid %d)", p.PID),
			"once kubelet uses Berth: systemctl disable --now cri-docker.socket cri-docker.service"))
	}
	var found []string
	for _, p := range e.opts.LeftoverPaths {
		if _, err := os.Lstat(p); err == nil {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		out = append(out, warn(name, "left from dockershim or cri-dockerd: "+strings.Join(found, ", "),
			"Berth adopts their containers by name and needs none of these: once kubelet uses Berth and every pod from before is gone, disable the units and remove these"))
	}
	if len(out) == 0 {
		out = append(out, pass(name, "no dockershim or cri-dockerd state, sockets, units or processes"))
	}
	return out
}

// checkCompatFlags: flags Berth accepts from cri-dockerd unit files but
// that have no effect on it are set to their defaults, or the operator is
// told what decides instead.
func checkCompatFlags(_ context.Context, e *env) []Finding {
	const name = "compat-flags"
	ignored := e.opts.Config.IgnoredFlags()
	if len(ignored) == 0 {
		return []Finding{pass(name, "no flag accepted for cri-dockerd compatibility is set to a value Berth ignores")}
	}
	var out []Finding
	for _, f := range ignored {
		out = append(out, warn(name,
			fmt.Sprintf("%s has no effect on Berth: %s", f.Flag, f.Why),
			fmt.Sprintf("remove the flag; set %s instead", f.Where)))
	}
	return out
}
