package network

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// Options configure a Manager.
type Options struct {
	// Plugin is "cni", or "" for Docker's own bridge networking.
	Plugin   string
	BinDirs  []string
	ConfDir  string
	CacheDir string
	MTU      int
	// PodCIDR is the pod CIDR until kubelet sets one (UpdateRuntimeConfig):
	// one CIDR, or an IPv4 and an IPv6 one, comma-separated.
	PodCIDR string
}

// Manager runs CNI for pod sandboxes.
type Manager struct {
	opts Options
	cni  *libcni.CNIConfig

	mu      sync.Mutex // guards podCIDR
	podCIDR string
}

// New returns a Manager. It reads no configuration yet: the configuration
// is read on every pod set-up, so a CNI installed after Berth starts (as
// network add-ons do) is picked up.
func New(opts Options) *Manager {
	return &Manager{
		opts:    opts,
		cni:     libcni.NewCNIConfigWithCacheDir(opts.BinDirs, opts.CacheDir, pluginExec()),
		podCIDR: opts.PodCIDR,
	}
}

// pluginExec is how plugins are run: libcni's default, given up front.
// Left nil, libcni sets it on first use without a lock, a data race when
// the first pods are set up at once (seen under the race detector after a
// Berth restart).
func pluginExec() invoke.Exec {
	return &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	}
}

// SetPodCIDR records the node's pod CIDR (kubelet's UpdateRuntimeConfig)
// and reports whether it changed. Pods set up from then on get it as the
// ipRanges capability; pods already running keep their addresses.
func (m *Manager) SetPodCIDR(cidr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.podCIDR != cidr
	m.podCIDR = cidr
	return changed
}

// PodCIDR returns the pod CIDR last set, or "".
func (m *Manager) PodCIDR() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.podCIDR
}

// UsesCNI reports whether pods get their network from CNI (as opposed to
// Docker's bridge).
func (m *Manager) UsesCNI() bool { return m.opts.Plugin == "cni" }

// Ready reports whether pods can be networked now and, if not, why: with
// CNI, a valid configuration whose plugins exist must be present.
func (m *Manager) Ready() (bool, string) {
	if !m.UsesCNI() {
		return true, ""
	}
	list, file, err := LoadConfig(m.opts.ConfDir, m.opts.BinDirs)
	if err != nil {
		return false, err.Error()
	}
	// As cri-dockerd: a configuration that takes its ranges from the pod
	// CIDR cannot give a pod an address before there is one.
	if wantsIPRanges(list) && m.PodCIDR() == "" {
		return false, fmt.Sprintf("%s: a plugin takes its address ranges from the pod CIDR (capability %q) and none is set yet: kubelet sets it with UpdateRuntimeConfig (the node's podCIDR), or give --pod-cidr", file, ipRangesCapability)
	}
	return true, ""
}

// ipRangesCapability is the CNI capability through which host-local (and
// other IPAM plugins) take their ranges from the runtime: what kubelet's
// kubenet-era runtimes, dockershim and cri-dockerd, passed the pod CIDR as.
const ipRangesCapability = "ipRanges"

// wantsIPRanges reports whether a plugin of list declares the ipRanges
// capability.
func wantsIPRanges(list *libcni.NetworkConfigList) bool {
	for _, p := range list.Plugins {
		if p.Network.Capabilities[ipRangesCapability] {
			return true
		}
	}
	return false
}

// ipRange is one range of the ipRanges capability (host-local's "ranges").
type ipRange struct {
	Subnet string `json:"subnet"`
}

// ipRanges turns the pod CIDR into the ipRanges capability's value: a
// range set per CIDR, so that a dual-stack CIDR ("10.244.1.0/24,fd00::/64")
// gives a pod an address of each family.
func ipRanges(podCIDR string) [][]ipRange {
	var sets [][]ipRange
	for _, c := range strings.Split(podCIDR, ",") {
		if c = strings.TrimSpace(c); c != "" {
			sets = append(sets, []ipRange{{Subnet: c}})
		}
	}
	return sets
}
