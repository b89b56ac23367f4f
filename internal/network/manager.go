package network

import (
	"github.com/containernetworking/cni/libcni"
)

// Options configure a Manager.
type Options struct {
	// Plugin is "cni", or "" for Docker's own bridge networking.
	Plugin   string
	BinDirs  []string
	ConfDir  string
	CacheDir string
	MTU      int
}

// Manager runs CNI for pod sandboxes.
type Manager struct {
	opts Options
	cni  *libcni.CNIConfig
}

// New returns a Manager. It reads no configuration yet: the configuration
// is read on every pod set-up, so a CNI installed after Berth starts (as
// network add-ons do) is picked up.
func New(opts Options) *Manager {
	return &Manager{
		opts: opts,
		cni:  libcni.NewCNIConfigWithCacheDir(opts.BinDirs, opts.CacheDir, nil),
	}
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
	if _, _, err := LoadConfig(m.opts.ConfDir, m.opts.BinDirs); err != nil {
		return false, err.Error()
	}
	return true, ""
}
