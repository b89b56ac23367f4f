package network

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func TestParseQuantity(t *testing.T) {
	for in, want := range map[string]uint64{"10M": 10e6, "1Gi": 1 << 30, "500k": 500e3, "1.5M": 1.5e6, "100": 100} {
		got, err := parseQuantity(in)
		if err != nil || got != want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-1M", "1 M", "NaN", "Inf"} {
		if _, err := parseQuantity(bad); err == nil {
			t.Errorf("parseQuantity(%q) accepted", bad)
		}
	}
}

func TestBandwidthAnnotations(t *testing.T) {
	bw, err := bandwidth(map[string]string{"kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M"})
	if err != nil || bw == nil || bw.IngressRate != 1e6 || bw.EgressRate != 2e6 || bw.IngressBurst == 0 {
		t.Errorf("bandwidth = %+v, %v", bw, err)
	}
	if bw, err := bandwidth(map[string]string{"other": "x"}); bw != nil || err != nil {
		t.Errorf("no annotations: %+v %v", bw, err)
	}
	if _, err := bandwidth(map[string]string{"kubernetes.io/egress-bandwidth": "lots"}); err == nil {
		t.Errorf("bad bandwidth accepted")
	}
}

func TestPodIPsSkipHostInterfacesAndPutIPv4First(t *testing.T) {
	one, zero := 1, 0
	r := &types100.Result{
		Interfaces: []*types100.Interface{{Name: "cni0"}, {Name: "eth0", Sandbox: "/proc/1/ns/net"}},
		IPs: []*types100.IPConfig{
			{Interface: &zero, Address: net.IPNet{IP: net.ParseIP("10.0.0.1"), Mask: net.CIDRMask(24, 32)}},
			{Interface: &one, Address: net.IPNet{IP: net.ParseIP("fd00::5"), Mask: net.CIDRMask(64, 128)}},
			{Interface: &one, Address: net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)}},
		},
	}
	got := podIPs(r)
	if len(got) != 2 || got[0] != "10.0.0.5" || got[1] != "fd00::5" {
		t.Errorf("podIPs = %v", got)
	}
	raw, _ := json.Marshal(r)
	r.CNIVersion = "1.0.0"
	raw, _ = json.Marshal(r)
	if ips, err := PodIPsFromResult(raw); err != nil || len(ips) != 2 {
		t.Errorf("PodIPsFromResult = %v, %v", ips, err)
	}
}

func TestInjectMTU(t *testing.T) {
	list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"ptp","mtu":1400},{"type":"portmap"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := injectMTU(list, 1450)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plugins []map[string]any `json:"plugins"`
	}
	_ = json.Unmarshal(out, &got)
	if got.Plugins[0]["mtu"] != 1450.0 || got.Plugins[1]["mtu"] != 1400.0 || got.Plugins[2]["mtu"] != nil {
		t.Errorf("plugins = %v", got.Plugins)
	}
}

// TestPodCIDRReachesPluginsThatAskForIt: the pod CIDR is passed as the
// ipRanges capability (a range set per CIDR), and a configuration that
// declares the capability is not ready until there is a pod CIDR.
func TestPodCIDRReachesPluginsThatAskForIt(t *testing.T) {
	bin := t.TempDir()
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if err := os.WriteFile(filepath.Join(bin, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const withCap = `{"cniVersion":"1.0.0","name":"n","plugins":[
		{"type":"bridge","capabilities":{"ipRanges":true},"ipam":{"type":"host-local"}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`
	const withoutCap = `{"cniVersion":"1.0.0","name":"n","plugins":[
		{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}}]}`
	for _, tc := range []struct {
		name      string
		conf      string
		cidr      string
		ready     bool
		wantRange any
	}{
		{name: "asked for, not set", conf: withCap, ready: false},
		{name: "asked for, one CIDR", conf: withCap, cidr: "10.244.1.0/24", ready: true,
			wantRange: []any{[]any{map[string]any{"subnet": "10.244.1.0/24"}}}},
		{name: "asked for, dual-stack", conf: withCap, cidr: "10.244.1.0/24, fd00:244:1::/64", ready: true,
			wantRange: []any{[]any{map[string]any{"subnet": "10.244.1.0/24"}}, []any{map[string]any{"subnet": "fd00:244:1::/64"}}}},
		{name: "not asked for, not set", conf: withoutCap, ready: true},
		// Passed anyway: libcni gives it only to plugins that declare it.
		{name: "not asked for, set", conf: withoutCap, cidr: "10.244.1.0/24", ready: true,
			wantRange: []any{[]any{map[string]any{"subnet": "10.244.1.0/24"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := t.TempDir()
			if err := os.WriteFile(filepath.Join(conf, "10-n.conflist"), []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			m := New(Options{Plugin: "cni", BinDirs: []string{bin}, ConfDir: conf})
			if tc.cidr != "" && !m.SetPodCIDR(tc.cidr) {
				t.Errorf("SetPodCIDR(%q) reported no change", tc.cidr)
			}
			ready, reason := m.Ready()
			if ready != tc.ready {
				t.Errorf("Ready = %v (%s), want %v", ready, reason, tc.ready)
			}
			if !ready && (!strings.Contains(reason, "ipRanges") || !strings.Contains(reason, "--pod-cidr")) {
				t.Errorf("not ready for a reason that names neither the capability nor the flag: %s", reason)
			}
			a, err := m.Prepare(PodNetwork{SandboxID: "sb", NetNS: "/proc/1/ns/net"})
			if err != nil {
				t.Fatal(err)
			}
			// As stored in the checkpoint and read back for DEL.
			raw, err := json.Marshal(a.CapabilityArgs)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			got, ok := back["ipRanges"]
			if tc.wantRange == nil {
				if ok {
					t.Errorf("ipRanges = %v with no pod CIDR", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.wantRange) {
				t.Errorf("ipRanges = %v, want %v", got, tc.wantRange)
			}
		})
	}
}

func TestPodCIDRFromOptions(t *testing.T) {
	m := New(Options{PodCIDR: "10.244.2.0/24"})
	if m.PodCIDR() != "10.244.2.0/24" {
		t.Errorf("PodCIDR = %q", m.PodCIDR())
	}
	if m.SetPodCIDR("10.244.2.0/24") {
		t.Errorf("setting the same CIDR reported a change")
	}
}
