package e2e

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestPodCIDRReachesCNI: with a network configuration whose host-local
// takes its ranges from the runtime (capability ipRanges), the pod CIDR
// kubelet sets with UpdateRuntimeConfig (or --pod-cidr) is where pods get
// their addresses, as with dockershim and cri-dockerd; until one is set
// the network is not ready and pods are refused with the reason.
func TestPodCIDRReachesCNI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		dual bool
		flag bool // --pod-cidr instead of UpdateRuntimeConfig
	}{
		{name: "UpdateRuntimeConfig"},
		{name: "UpdateRuntimeConfig dual-stack", dual: true},
		{name: "--pod-cidr", flag: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			n := framework.NewCNINetwork(t, framework.CNIOptions{IPRanges: true, DualStack: tc.dual})
			cidr := n.Subnet
			if tc.dual {
				cidr += "," + n.Subnet6
			}
			args := n.Args()
			if tc.flag {
				args = append(args, "--pod-cidr", cidr)
			}
			b := framework.StartBerth(t, framework.Options{Args: args})
			if !tc.flag {
				c := mustStatus(t, b)[runtimeapi.NetworkReady]
				if c == nil || c.Status || !strings.Contains(c.Message, "ipRanges") {
					t.Errorf("NetworkReady before a pod CIDR = %v, want false naming ipRanges", c)
				}
				cfg := podConfig("no-cidr-yet")
				_, err := b.RuntimeClient.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
				wantCode(t, err, codes.FailedPrecondition, "pod CIDR")
				if err := b.Runtime.UpdateRuntimeConfig(ctx, &runtimeapi.RuntimeConfig{
					NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}); err != nil {
					t.Fatal(err)
				}
			}
			if c := mustStatus(t, b)[runtimeapi.NetworkReady]; c == nil || !c.Status {
				t.Errorf("NetworkReady with a pod CIDR = %v, want true", c)
			}
			id := runPod(t, b, podConfig("from-cidr"))
			st := podStatus(t, b, id)
			ips := []string{st.GetNetwork().GetIp()}
			for _, ip := range st.GetNetwork().GetAdditionalIps() {
				ips = append(ips, ip.GetIp())
			}
			want := []string{n.Subnet}
			if tc.dual {
				want = append(want, n.Subnet6)
			}
			if len(ips) != len(want) {
				t.Fatalf("pod IPs = %v, want one in each of %v", ips, want)
			}
			for i, w := range want {
				_, subnet, _ := net.ParseCIDR(w)
				if ip := net.ParseIP(ips[i]); ip == nil || !subnet.Contains(ip) {
					t.Errorf("pod IP %s is not in the pod CIDR %s", ips[i], w)
				}
			}
			if got := n.AllocatedIPs(); len(got) != len(want) {
				t.Errorf("host-local holds %v, want the pod's %v", got, ips)
			}
		})
	}
}
