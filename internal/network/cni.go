package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-cri/berth/internal/errdefs"
)

// DefaultIfName is the pod's network interface.
const DefaultIfName = "eth0"

// PodNetwork is what CNI needs to know about a pod to set up its network.
type PodNetwork struct {
	SandboxID    string
	PodName      string
	PodNamespace string
	PodUID       string
	// NetNS is the path of the pod's network namespace; empty on a DEL
	// after the namespace is gone.
	NetNS        string
	PortMappings []PortMapping
	Annotations  map[string]string
	CgroupParent string
}

// PortMapping is one hostPort, as the portmap plugin takes it.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Attachment is a pod's CNI attachment: everything DEL needs to undo ADD
// exactly, and what ADD returned. It is stored in the sandbox checkpoint
// (internal/checkpoint.Network embeds it).
//
// NOTE: these fields are the on-disk format of sandbox records, which
// outlive Berth's versions: a field added here is persisted (give it a
// JSON name and omitempty); renaming or removing one needs a new record
// version. internal/checkpoint's TestNetworkRecordFormat pins the format.
type Attachment struct {
	// ConfList is the network configuration ADD used, so DEL uses the
	// same one even if the configuration directory changed meanwhile.
	ConfList json.RawMessage `json:"confList"`
	NetNS    string          `json:"netns"`
	IfName   string          `json:"ifName"`
	// CapabilityArgs are the runtime capabilities ADD was given
	// (portMappings, bandwidth, …); DEL gets the same.
	CapabilityArgs map[string]any  `json:"capabilityArgs,omitempty"`
	Args           [][2]string     `json:"args,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	IPs            []string        `json:"ips,omitempty"`
	// Loopback is true when the loopback plugin ran too.
	Loopback bool `json:"loopback,omitempty"`
}

// Prepare loads the current network configuration and builds the
// attachment ADD will use, without running anything.
func (m *Manager) Prepare(pod PodNetwork) (*Attachment, error) {
	list, _, err := LoadConfig(m.opts.ConfDir, m.opts.BinDirs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	confList := list.Bytes
	if m.opts.MTU > 0 {
		if confList, err = injectMTU(list, m.opts.MTU); err != nil {
			return nil, err
		}
	}
	caps := map[string]any{
		"io.kubernetes.cri.pod-annotations": nonNil(pod.Annotations),
	}
	if len(pod.PortMappings) > 0 {
		caps["portMappings"] = pod.PortMappings
	}
	bw, err := bandwidth(pod.Annotations)
	if err != nil {
		return nil, err
	}
	if bw != nil {
		caps["bandwidth"] = bw
	}
	if pod.CgroupParent != "" {
		caps["cgroupPath"] = pod.CgroupParent
	}
	// libcni passes a capability only to plugins that declare it, so the
	// ranges reach exactly the configurations that ask for them. They are
	// stored with the attachment: DEL gets the ranges ADD had.
	if r := ipRanges(m.PodCIDR()); len(r) > 0 {
		caps[ipRangesCapability] = r
	}
	_, loopErr := invoke.FindInPath("loopback", m.opts.BinDirs)
	return &Attachment{
		ConfList:       confList,
		NetNS:          pod.NetNS,
		IfName:         DefaultIfName,
		CapabilityArgs: caps,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.PodNamespace},
			{"K8S_POD_NAME", pod.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.SandboxID},
			{"K8S_POD_UID", pod.PodUID},
		},
		Loopback: loopErr == nil,
	}, nil
}

// Add runs CNI ADD for the attachment (loopback first, if it ran in
// Prepare's view, then the pod network) and fills in the result and IPs.
func (m *Manager) Add(ctx context.Context, sandboxID string, a *Attachment) error {
	list, err := libcni.ConfListFromBytes(a.ConfList)
	if err != nil {
		return fmt.Errorf("CNI configuration: %w", err)
	}
	if a.Loopback {
		if _, err := m.cni.AddNetworkList(ctx, loopbackConf, m.runtimeConf(sandboxID, a, "lo")); err != nil {
			return fmt.Errorf("CNI ADD (loopback): %w", err)
		}
	}
	res, err := m.cni.AddNetworkList(ctx, list, m.runtimeConf(sandboxID, a, a.IfName))
	if err != nil {
		return fmt.Errorf("CNI ADD (network %q): %w", list.Name, err)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("CNI ADD (network %q) result: %w", list.Name, err)
	}
	raw, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	a.Result = raw
	a.IPs = podIPs(cur)
	if len(a.IPs) == 0 {
		return fmt.Errorf("CNI ADD (network %q) gave the pod no IP address", list.Name)
	}
	return nil
}

// Del runs CNI DEL for the attachment, with netns as the namespace path
// (empty when the namespace is gone: plugins then release what they hold
// outside it, such as IP allocations and iptables rules).
func (m *Manager) Del(ctx context.Context, sandboxID string, a *Attachment, netns string) error {
	list, err := libcni.ConfListFromBytes(a.ConfList)
	if err != nil {
		return fmt.Errorf("CNI configuration: %w", err)
	}
	b := *a
	b.NetNS = netns
	var errs []error
	if err := m.cni.DelNetworkList(ctx, list, m.runtimeConf(sandboxID, &b, b.IfName)); err != nil {
		errs = append(errs, fmt.Errorf("CNI DEL (network %q): %w", list.Name, err))
	}
	if a.Loopback {
		if err := m.cni.DelNetworkList(ctx, loopbackConf, m.runtimeConf(sandboxID, &b, "lo")); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL (loopback): %w", err))
		}
	}
	return errors.Join(errs...)
}

// Check runs CNI CHECK for a set-up attachment.
func (m *Manager) Check(ctx context.Context, sandboxID string, a *Attachment) error {
	list, err := libcni.ConfListFromBytes(a.ConfList)
	if err != nil {
		return fmt.Errorf("CNI configuration: %w", err)
	}
	if err := m.cni.CheckNetworkList(ctx, list, m.runtimeConf(sandboxID, a, a.IfName)); err != nil {
		return fmt.Errorf("CNI CHECK (network %q): %w", list.Name, err)
	}
	return nil
}

func (m *Manager) runtimeConf(sandboxID string, a *Attachment, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    sandboxID,
		NetNS:          a.NetNS,
		IfName:         ifName,
		Args:           a.Args,
		CapabilityArgs: a.CapabilityArgs,
	}
}

var loopbackConf = func() *libcni.NetworkConfigList {
	l, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"0.4.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		panic(err)
	}
	return l
}()

// podIPs returns the IPs the result gives the pod's interfaces, IPv4
// first: kubelet takes the first as the pod's primary IP.
func podIPs(r *types100.Result) []string {
	var v4, v6 []string
	for _, ipc := range r.IPs {
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue // an interface on the host side, not in the pod
			}
		}
		ip := ipc.Address.IP
		if ip.To4() != nil {
			v4 = append(v4, ip.String())
		} else if ip != nil {
			v6 = append(v6, ip.String())
		}
	}
	return append(v4, v6...)
}

// ValidatePodAnnotations checks the annotations Berth passes to CNI plugins
// (bandwidth limits), so a bad one is refused before anything is created.
func ValidatePodAnnotations(annotations map[string]string) error {
	_, err := bandwidth(annotations)
	return err
}

// bandwidthArgs is the bandwidth plugin's runtime config.
type bandwidthArgs struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// bandwidth reads the kubernetes.io/{ingress,egress}-bandwidth annotations
// (bits per second, as Kubernetes quantities).
func bandwidth(annotations map[string]string) (*bandwidthArgs, error) {
	var bw bandwidthArgs
	for key, rate := range map[string]*uint64{
		"kubernetes.io/ingress-bandwidth": &bw.IngressRate,
		"kubernetes.io/egress-bandwidth":  &bw.EgressRate,
	} {
		v, ok := annotations[key]
		if !ok {
			continue
		}
		n, err := parseQuantity(v)
		if err != nil || n <= 0 {
			return nil, errdefs.InvalidArgument("config.annotations["+key+"]", "%q is not a bandwidth (e.g. 10M)", v)
		}
		*rate = n
	}
	if bw.IngressRate == 0 && bw.EgressRate == 0 {
		return nil, nil
	}
	// As kubelet did: the rate limits, the burst does not.
	if bw.IngressRate > 0 {
		bw.IngressBurst = math.MaxInt32
	}
	if bw.EgressRate > 0 {
		bw.EgressBurst = math.MaxInt32
	}
	return &bw, nil
}

// parseQuantity parses a non-negative Kubernetes quantity with a decimal
// (k, M, G, T, P, E) or binary (Ki … Ei) suffix into an integer.
func parseQuantity(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, suf := range []struct {
		s string
		m uint64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
	} {
		if strings.HasSuffix(s, suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a quantity", s)
	}
	v := f * float64(mult)
	if v > math.MaxUint64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return uint64(v), nil
}

// injectMTU sets mtu on the plugins that take one, unless the
// configuration already does.
func injectMTU(list *libcni.NetworkConfigList, mtu int) ([]byte, error) {
	var raw map[string]any
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return nil, err
	}
	plugins, _ := raw["plugins"].([]any)
	for _, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		switch pm["type"] {
		case "bridge", "ptp", "macvlan", "ipvlan", "vlan":
			if _, set := pm["mtu"]; !set {
				pm["mtu"] = mtu
			}
		}
	}
	return json.Marshal(raw)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// PodIPsFromResult re-reads the IPs of a stored ADD result.
func PodIPsFromResult(raw []byte) ([]string, error) {
	r, err := types100.NewResult(raw)
	if err != nil {
		return nil, err
	}
	cur, err := types100.GetResult(r)
	if err != nil {
		return nil, err
	}
	return podIPs(cur), nil
}

// CachedIPs returns the pod IPs libcni cached when a sandbox's network was
// set up by another runtime using the same cache directory (cri-dockerd),
// read with the current configuration. It returns nil when there is none.
func (m *Manager) CachedIPs(sandboxID string) []string {
	list, _, err := LoadConfig(m.opts.ConfDir, m.opts.BinDirs)
	if err != nil {
		return nil
	}
	res, err := m.cni.GetNetworkListCachedResult(list, &libcni.RuntimeConf{ContainerID: sandboxID, IfName: DefaultIfName})
	if err != nil || res == nil {
		return nil
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil
	}
	return podIPs(cur)
}
