package dockerspec

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/store"
)

// Sandbox defaults, as kubelet's dockershim had them: the pause container
// takes few CPU shares and is the last process the OOM killer picks.
const (
	sandboxCPUShares   = 2
	sandboxOOMScoreAdj = -998
)

// SandboxOptions are the node-wide settings a pause container depends on.
type SandboxOptions struct {
	Image string
	// RootDir labels the container with the Berth instance that made it.
	RootDir string
	// CNI is true when pods get their network from CNI: the pause container
	// then has Docker's "none" network and CNI sets up its namespace.
	CNI bool
	// CgroupDriver is Docker's: "cgroupfs" or "systemd".
	CgroupDriver string
	// Runtimes are the runtime names Docker knows; a RuntimeHandler must
	// be one of them.
	Runtimes []string
	// OOM clamps oom_score_adj values to what the host allows.
	OOM OOMPolicy
	// UsernsRemap is true when the daemon puts containers in a user
	// namespace of its own (dockerd --userns-remap).
	UsernsRemap bool
	// Userns says why Berth's runtime wrapper cannot give pods user
	// namespaces of their own on this daemon; nil when it can.
	Userns error
	// AppArmor is true when the kernel has AppArmor.
	AppArmor bool
	// ReadFile reads a Localhost seccomp profile.
	ReadFile func(path string) ([]byte, error)
}

// OOMPolicy says how low an oom_score_adj Docker can set on this host.
type OOMPolicy struct {
	// Clamp is true when negative values below Min would make runc fail
	// (the host lacks CAP_SYS_RESOURCE).
	Clamp bool
	Min   int
}

// Apply returns v, raised to Min when clamping.
func (p OOMPolicy) Apply(v int) int {
	if p.Clamp && v < p.Min {
		return p.Min
	}
	return v
}

// CreateSpec is a Docker container create request.
type CreateSpec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
}

// sandboxMeta is the JSON in LabelSandboxMeta.
type sandboxMeta struct {
	Metadata       *runtimeapi.PodSandboxMetadata `json:"metadata"`
	Labels         map[string]string              `json:"labels,omitempty"`
	Annotations    map[string]string              `json:"annotations,omitempty"`
	LogDirectory   string                         `json:"logDirectory,omitempty"`
	RuntimeHandler string                         `json:"runtimeHandler,omitempty"`
	Hostname       string                         `json:"hostname,omitempty"`
	Namespaces     *runtimeapi.NamespaceOption    `json:"namespaces,omitempty"`
}

// SandboxSpec translates a validated PodSandboxConfig into the pause
// container's create request.
func SandboxSpec(c *runtimeapi.PodSandboxConfig, handler string, o SandboxOptions) (*CreateSpec, error) {
	if handler != "" && !slices.Contains(o.Runtimes, handler) {
		return nil, errdefs.InvalidArgument("runtime_handler", "%q is not a runtime Docker knows (it has: %s)", handler, strings.Join(o.Runtimes, ", "))
	}
	lc := c.GetLinux()
	sc := lc.GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	hostNet := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE

	meta := sandboxMeta{
		Metadata:       c.GetMetadata(),
		Labels:         c.GetLabels(),
		Annotations:    c.GetAnnotations(),
		LogDirectory:   c.GetLogDirectory(),
		RuntimeHandler: handler,
		Hostname:       c.GetHostname(),
		Namespaces:     ns,
	}
	labels := dockerLabels(c.GetLabels(), c.GetAnnotations(), map[string]string{
		LabelType:          TypeSandbox,
		LabelContainerName: PodInfraContainerName,
		LabelSandboxMeta:   mustJSON(meta),
		LabelRoot:          o.RootDir,
	})

	cfg := &container.Config{
		Image:  o.Image,
		Labels: labels,
	}
	hc := &container.HostConfig{
		IpcMode:     "shareable",
		Sysctls:     lc.GetSysctls(),
		Runtime:     handler,
		OomScoreAdj: o.OOM.Apply(sandboxOOMScoreAdj),
		Resources: container.Resources{
			CPUShares: sandboxCPUShares,
		},
		ReadonlyRootfs: sc.GetReadonlyRootfs(),
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}

	switch {
	case hostNet:
		hc.NetworkMode = "host"
		// The host's hostname, as for every host-network pod: Docker
		// refuses a hostname of its own with the host's network.
		hc.UTSMode = "host"
	case o.CNI:
		hc.NetworkMode = "none"
		cfg.Hostname = c.GetHostname()
	default:
		// Docker-bridge mode: Docker's default network and port publishing.
		cfg.Hostname = c.GetHostname()
		cfg.ExposedPorts, hc.PortBindings = portBindings(c.GetPortMappings())
	}
	if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
		hc.IpcMode = "host"
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_NODE {
		hc.PidMode = "host"
	}
	// A pod asking for a user namespace of its own gets it from Berth's
	// OCI runtime wrapper, with kubelet's mappings; on a daemon that
	// remaps every container (dockerd --userns-remap) it gets the
	// daemon's instead (its mappings are checked once the pause
	// container runs). Every other pod runs in the host's.
	const usernsField = "config.linux.security_context.namespace_options.userns_options.mode"
	switch podUserns := PodUserns(ns); {
	case podUserns && hostNet:
		return nil, fmt.Errorf("%s: POD: Docker cannot run a container in a user namespace with the host's network: %w", usernsField, errdefs.ErrFailedPrecondition)
	case podUserns && o.UsernsRemap:
	case podUserns && o.Userns != nil:
		return nil, fmt.Errorf("%s: POD: %s, and Berth's runtime wrapper cannot run it: %v; run the pod with hostUsers: true: %w", usernsField, NoUsernsReason, o.Userns, errdefs.ErrFailedPrecondition)
	case podUserns:
		if err := useUsernsRuntime(hc, handler, ns.GetUsernsOptions(), idmap.RoleSandbox, nil); err != nil {
			return nil, err
		}
	case o.UsernsRemap:
		hc.UsernsMode = "host"
	}

	if dns := c.GetDnsConfig(); dns != nil {
		for _, s := range dns.GetServers() {
			a, _ := netip.ParseAddr(s) // validated
			hc.DNS = append(hc.DNS, a)
		}
		hc.DNSSearch = dns.GetSearches()
		hc.DNSOptions = dns.GetOptions()
	}

	parent, err := CgroupParent(lc.GetCgroupParent(), o.CgroupDriver)
	if err != nil {
		return nil, err
	}
	hc.CgroupParent = parent

	if u := sc.GetRunAsUser(); u != nil {
		cfg.User = fmt.Sprint(u.GetValue())
		if g := sc.GetRunAsGroup(); g != nil {
			cfg.User += fmt.Sprintf(":%d", g.GetValue())
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		hc.GroupAdd = append(hc.GroupAdd, fmt.Sprint(g))
	}
	hc.SecurityOpt = append(hc.SecurityOpt, selinuxOpts(sc.GetSelinuxOptions())...)
	// The pod's seccomp and AppArmor profiles confine the pause container
	// too, as containerd does; kubelet passes each container its own.
	profiles := &runtimeapi.LinuxContainerSecurityContext{Seccomp: sc.GetSeccomp(), SeccompProfilePath: sc.GetSeccompProfilePath(), Apparmor: sc.GetApparmor()}
	copts := ContainerOptions{ReadFile: o.ReadFile, AppArmor: o.AppArmor}
	seccomp, err := seccompOpt(profiles, copts)
	if err != nil {
		return nil, err
	}
	apparmor, err := apparmorOpt(profiles, copts)
	if err != nil {
		return nil, err
	}
	hc.SecurityOpt = append(hc.SecurityOpt, seccomp...)
	hc.SecurityOpt = append(hc.SecurityOpt, apparmor...)

	return &CreateSpec{Name: SandboxName(c.GetMetadata()), Config: cfg, HostConfig: hc}, nil
}

// CgroupParent converts kubelet's cgroup parent into what Docker's cgroup
// driver expects: a path for cgroupfs, a slice name ("…-pod<uid>.slice")
// for systemd.
func CgroupParent(parent, driver string) (string, error) {
	if parent == "" {
		return "", nil
	}
	if driver != "systemd" {
		return parent, nil
	}
	base := path.Base(parent)
	if strings.HasSuffix(base, ".slice") {
		return base, nil
	}
	// A cgroupfs-style path under the systemd driver: build the slice
	// name systemd would give it (/kubepods/burstable/pod1 →
	// kubepods-burstable-pod1.slice).
	parts := strings.FieldsFunc(parent, func(r rune) bool { return r == '/' })
	for _, p := range parts {
		if strings.Contains(p, "-") {
			return "", errdefs.InvalidArgument("config.linux.cgroup_parent", "%q cannot be converted to a systemd slice", parent)
		}
	}
	return strings.Join(parts, "-") + ".slice", nil
}

func selinuxOpts(o *runtimeapi.SELinuxOption) []string {
	if o == nil {
		return nil
	}
	var out []string
	for _, kv := range [][2]string{{"user", o.GetUser()}, {"role", o.GetRole()}, {"type", o.GetType()}, {"level", o.GetLevel()}} {
		if kv[1] != "" {
			out = append(out, "label="+kv[0]+":"+kv[1])
		}
	}
	return out
}

// SandboxFromInspect builds Berth's record of a pause container from
// Docker's inspect output. rootDir is this Berth's, to tell its own
// containers from others'. The network fields come from the checkpoint and
// are left for the caller.
func SandboxFromInspect(in container.InspectResponse, rootDir string) (*store.Sandbox, error) {
	if in.Config == nil || in.HostConfig == nil {
		return nil, fmt.Errorf("container %s: incomplete inspect data", in.ID)
	}
	sb := &store.Sandbox{
		ID:           in.ID,
		Name:         strings.TrimPrefix(in.Name, "/"),
		Image:        in.Config.Image,
		CgroupParent: in.HostConfig.CgroupParent,
		CreatedAt:    parseTime(in.Created),
	}
	if in.State != nil {
		sb.Running = in.State.Running
		sb.Pid = in.State.Pid
	}
	labels := in.Config.Labels
	if raw, ok := labels[LabelSandboxMeta]; ok {
		var m sandboxMeta
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return nil, fmt.Errorf("container %s: label %s: %w", in.ID, LabelSandboxMeta, err)
		}
		sb.Metadata, sb.Labels, sb.Annotations = m.Metadata, m.Labels, m.Annotations
		sb.LogDirectory, sb.RuntimeHandler, sb.Hostname, sb.Namespaces = m.LogDirectory, m.RuntimeHandler, m.Hostname, m.Namespaces
		sb.Owned = labels[LabelRoot] == rootDir
	} else {
		// Created by dockershim or cri-dockerd: everything from the name
		// and the labels.
		_, pod, _, err := ParseName(in.Name)
		if err != nil {
			return nil, err
		}
		sb.Metadata = pod
		sb.Labels, sb.Annotations = splitLabels(labels)
		delete(sb.Labels, LabelContainerName)
		sb.Hostname = in.Config.Hostname
		sb.RuntimeHandler = in.HostConfig.Runtime
		if sb.RuntimeHandler == "runc" {
			sb.RuntimeHandler = ""
		}
		sb.Adopted = true
	}
	if sb.Labels == nil {
		sb.Labels = map[string]string{}
	}
	if sb.Annotations == nil {
		sb.Annotations = map[string]string{}
	}
	if sb.Namespaces == nil {
		sb.Namespaces = &runtimeapi.NamespaceOption{
			Network: modeOf(string(in.HostConfig.NetworkMode) == "host"),
			Pid:     pidModeOf(string(in.HostConfig.PidMode) == "host"),
			Ipc:     modeOf(string(in.HostConfig.IpcMode) == "host"),
		}
	}
	return sb, nil
}

func modeOf(host bool) runtimeapi.NamespaceMode {
	if host {
		return runtimeapi.NamespaceMode_NODE
	}
	return runtimeapi.NamespaceMode_POD
}

func pidModeOf(host bool) runtimeapi.NamespaceMode {
	if host {
		return runtimeapi.NamespaceMode_NODE
	}
	return runtimeapi.NamespaceMode_CONTAINER
}

// BridgeIPs returns the IPs Docker's own networks gave a container (Docker
// bridge mode), IPv4 first.
func BridgeIPs(in container.InspectResponse) []string {
	if in.NetworkSettings == nil {
		return nil
	}
	var v4, v6 []string
	names := make([]string, 0, len(in.NetworkSettings.Networks))
	for n := range in.NetworkSettings.Networks {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ep := in.NetworkSettings.Networks[n]
		if ep == nil {
			continue
		}
		if ep.IPAddress.IsValid() {
			v4 = append(v4, ep.IPAddress.String())
		}
		if ep.GlobalIPv6Address.IsValid() {
			v6 = append(v6, ep.GlobalIPv6Address.String())
		}
	}
	return append(v4, v6...)
}

// parseTime parses Docker's RFC 3339 timestamps into Unix nanoseconds; the
// zero time ("0001-01-01T00:00:00Z") and garbage are 0.
func parseTime(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return 0
	}
	return t.UnixNano()
}

// PodSandbox is the ListPodSandbox form of a record.
func PodSandbox(sb *store.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       sb.Metadata,
		State:          sb.State(),
		CreatedAt:      sb.CreatedAt,
		Labels:         sb.Labels,
		Annotations:    sb.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
}

// PodSandboxStatus is the PodSandboxStatus form of a record.
func PodSandboxStatus(sb *store.Sandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sb.Metadata,
		State:          sb.State(),
		CreatedAt:      sb.CreatedAt,
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: sb.Namespaces}},
		Labels:         sb.Labels,
		Annotations:    sb.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
	// IPs are reported while the network is up; kubelet takes a missing
	// IP on a host-network pod to mean the node's.
	if sb.NetworkReady && len(sb.IPs) > 0 && sb.Namespaces.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// portBindings translates hostPorts into Docker port publishing, for
// Docker-bridge mode.
func portBindings(pms []*runtimeapi.PortMapping) (network.PortSet, network.PortMap) {
	if len(pms) == 0 {
		return nil, nil
	}
	exposed, bindings := network.PortSet{}, network.PortMap{}
	for _, pm := range pms {
		proto := network.IPProtocol(strings.ToLower(pm.GetProtocol().String()))
		port, ok := network.PortFrom(uint16(pm.GetContainerPort()), proto)
		if !ok {
			continue
		}
		exposed[port] = struct{}{}
		if pm.GetHostPort() == 0 {
			continue
		}
		b := network.PortBinding{HostPort: fmt.Sprint(pm.GetHostPort())}
		if ip, err := netip.ParseAddr(pm.GetHostIp()); err == nil {
			b.HostIP = ip
		}
		bindings[port] = append(bindings[port], b)
	}
	return exposed, bindings
}
