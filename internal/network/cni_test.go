package network

import (
	"encoding/json"
	"net"
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
