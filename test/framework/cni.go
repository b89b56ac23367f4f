package framework

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// CNIBinDir is where Debian's containernetworking-plugins live.
const CNIBinDir = "/usr/lib/cni"

// CNINetwork is a CNI network a test set up: a bridge of its own, its own
// subnets and host-local store, so tests running side by side never share
// addresses and leaks are attributable.
type CNINetwork struct {
	Name     string
	Bridge   string
	Subnet   string // IPv4 CIDR
	Subnet6  string // IPv6 CIDR, when DualStack
	ConfDir  string
	CacheDir string
}

// CNIOptions shape the network configuration.
type CNIOptions struct {
	DualStack bool
	// ExtraPlugins are appended to the chain (e.g. a failing plugin).
	ExtraPlugins []map[string]any
	// NoBandwidth leaves the bandwidth plugin out (Debian's v1.1.1 panics
	// on CNI CHECK when a pod has no bandwidth limits).
	NoBandwidth bool
	// BinDir overrides CNIBinDir in the flags (e.g. a dir with a fake plugin).
	BinDirs []string
	// IPRanges leaves host-local without ranges of its own: the bridge
	// plugin declares the ipRanges capability, so the runtime's pod CIDR
	// decides. Subnet (and Subnet6) are then free CIDRs for the test to
	// set as the pod CIDR.
	IPRanges bool
}

// NewCNINetwork writes a conflist (bridge + host-local + portmap + firewall
// + bandwidth, with the loopback plugin run by Berth) into a fresh
// directory.
func NewCNINetwork(tb testing.TB, o CNIOptions) *CNINetwork {
	tb.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	n, m := freeSubnet()
	net := &CNINetwork{
		Name:     "berth-e2e-" + suffix,
		Bridge:   "be" + suffix,
		Subnet:   fmt.Sprintf("10.%d.%d.0/24", 100+n, m),
		ConfDir:  tb.TempDir(),
		CacheDir: tb.TempDir(),
	}
	ranges := []any{[]any{map[string]any{"subnet": net.Subnet}}}
	if o.DualStack {
		net.Subnet6 = fmt.Sprintf("fd00:%x:%x::/64", n, m)
		ranges = append(ranges, []any{map[string]any{"subnet": net.Subnet6}})
	}
	ipam := map[string]any{"type": "host-local", "ranges": ranges, "routes": []any{map[string]any{"dst": "0.0.0.0/0"}}}
	bridge := map[string]any{"type": "bridge", "bridge": net.Bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true, "ipam": ipam}
	if o.IPRanges {
		delete(ipam, "ranges")
		bridge["capabilities"] = map[string]any{"ipRanges": true}
	}
	plugins := []map[string]any{
		bridge,
		{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true},
		{"type": "firewall"},
	}
	if !o.NoBandwidth {
		plugins = append(plugins, map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}})
	}
	plugins = append(plugins, o.ExtraPlugins...)
	conf := map[string]any{"cniVersion": "1.0.0", "name": net.Name, "plugins": plugins}
	data, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(filepath.Join(net.ConfDir, "10-berth-e2e.conflist"), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// The bridge plugin leaves its bridge behind; remove it, and the
		// (by then empty) host-local store. A test that failed before
		// its pods' CNI DEL ran leaves their iptables rules: remove them.
		removeIPTablesRules(tb, net.Name)
		_ = exec.Command("ip", "link", "del", net.Bridge).Run()
		if leaked := net.AllocatedIPs(); len(leaked) > 0 && !tb.Failed() {
			tb.Errorf("CNI network %s still has IPs allocated: %v", net.Name, leaked)
		}
		_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", net.Name))
	})
	return net
}

var (
	subnetsMu   sync.Mutex            // guards subnetsUsed
	subnetsUsed = map[[2]int64]bool{} // picked by this process
)

// freeSubnet picks 10.(100+n).m.0/24 at random among those this process
// has not used and no route on the host covers (networks of other test
// runs on the machine, once their bridge has its address). Two networks
// with one subnet would share routes and masquerading rules and break each
// other's pods.
func freeSubnet() (n, m int64) {
	subnetsMu.Lock()
	defer subnetsMu.Unlock()
	for range 100 {
		a, _ := rand.Int(rand.Reader, big.NewInt(100))
		b, _ := rand.Int(rand.Reader, big.NewInt(250))
		n, m = a.Int64(), b.Int64()
		if subnetsUsed[[2]int64{n, m}] {
			continue
		}
		out, err := exec.Command("ip", "-4", "route", "show", "match", fmt.Sprintf("10.%d.%d.1", 100+n, m)).Output()
		if err == nil && !strings.Contains(string(out), fmt.Sprintf("10.%d.%d.0/24", 100+n, m)) {
			break
		}
	}
	subnetsUsed[[2]int64{n, m}] = true
	return n, m
}

// Args are the berth serve flags that select this network.
func (n *CNINetwork) Args(o ...CNIOptions) []string {
	bin := CNIBinDir
	if len(o) > 0 && len(o[0].BinDirs) > 0 {
		bin = strings.Join(o[0].BinDirs, ",")
	}
	return []string{"--cni-conf-dir", n.ConfDir, "--cni-bin-dir", bin, "--cni-cache-dir", n.CacheDir}
}

// AllocatedIPs lists the addresses host-local holds for this network.
func (n *CNINetwork) AllocatedIPs() []string {
	entries, err := os.ReadDir(filepath.Join("/var/lib/cni/networks", n.Name))
	if err != nil {
		return nil
	}
	var ips []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "last_reserved_ip") || name == "lock" {
			continue
		}
		ips = append(ips, name)
	}
	return ips
}

// removeIPTablesRules deletes the iptables rules the CNI plugins added for
// the pods of network name (their comments name it) and the per-pod chains
// those rules jump to: what DEL would have removed, had it run.
func removeIPTablesRules(tb testing.TB, name string) {
	tag := `name: \"` + name + `\"`
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return
		}
		var dels, chains []string
		seen := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, tag) {
				continue
			}
			dels = append(dels, "-D "+strings.TrimPrefix(line, "-A "))
			f := strings.Fields(line)
			for i := range f {
				if f[i] == "-j" && i+1 < len(f) && strings.HasPrefix(f[i+1], "CNI-") && !strings.HasPrefix(f[i+1], "CNI-FORWARD") && !strings.HasPrefix(f[i+1], "CNI-HOSTPORT") && !seen[f[i+1]] {
					seen[f[i+1]] = true
					chains = append(chains, f[i+1])
				}
			}
		}
		if len(dels) == 0 {
			continue
		}
		// The rules, then the per-pod chains (emptied first: a rule in one may
		// carry no comment).
		var in strings.Builder
		fmt.Fprintf(&in, "*%s\n", table)
		for _, d := range dels {
			fmt.Fprintln(&in, d)
		}
		for _, c := range chains {
			fmt.Fprintf(&in, "-F %s\n-X %s\n", c, c)
		}
		fmt.Fprintln(&in, "COMMIT")
		cmd := exec.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Logf("removing the iptables rules of CNI network %s: %v: %s", name, err, out)
		}
	}
}
