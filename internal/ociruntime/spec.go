package ociruntime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/berth-cri/berth/internal/idmap"
)

// plan is what a container's OCI spec asks of the wrapper, read from the
// annotations Berth set and the namespaces Docker filled in.
type plan struct {
	role       string
	uids, gids []idmap.Mapping
	// pausePid is the pause container's process, whose namespaces an
	// app container joins (from the network namespace path Docker set).
	pausePid int
	// idmapped are the container paths of bind mounts to id-map.
	idmapped []string
	// rootPath is the root filesystem Docker prepared.
	rootPath string
}

// spec is a config.json held as generic JSON, so that fields the wrapper
// does not know (newer runtime-spec versions) pass through unchanged;
// numbers stay json.Number so none loses precision.
type spec map[string]any

func decodeSpec(raw []byte) (spec, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var s spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("reading config.json: %w", err)
	}
	return s, nil
}

func (s spec) encode() ([]byte, error) { return json.Marshal(map[string]any(s)) }

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// annotations returns the spec's annotations (nil when it has none).
func (s spec) annotations() map[string]string {
	out := map[string]string{}
	for k, v := range obj(s["annotations"]) {
		if str, ok := v.(string); ok {
			out[k] = str
		}
	}
	return out
}

// wantsUserns reports whether Berth asked the wrapper for a user
// namespace: only then does it touch the container.
func wantsUserns(s spec) bool {
	_, ok := s.annotations()[idmap.AnnotationUIDs]
	return ok
}

var procNS = regexp.MustCompile(`^/proc/([0-9]+)/ns/net$`)

// readPlan reads what the annotations ask and checks that the spec can
// honour it.
func readPlan(s spec) (*plan, error) {
	a := s.annotations()
	p := &plan{role: a[idmap.AnnotationRole]}
	var err error
	if p.uids, err = idmap.Parse(a[idmap.AnnotationUIDs]); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", idmap.AnnotationUIDs, err)
	}
	if p.gids, err = idmap.Parse(a[idmap.AnnotationGIDs]); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", idmap.AnnotationGIDs, err)
	}
	if p.idmapped, err = idmap.ParseMounts(a[idmap.AnnotationIDMappedMounts]); err != nil {
		return nil, err
	}
	linux := obj(s["linux"])
	if linux == nil {
		return nil, fmt.Errorf("config.json has no linux section")
	}
	netPath := ""
	for _, n := range list(linux["namespaces"]) {
		ns := obj(n)
		switch ns["type"] {
		case "user":
			return nil, fmt.Errorf("config.json already has a user namespace")
		case "network":
			netPath, _ = ns["path"].(string)
		}
	}
	switch p.role {
	case idmap.RoleSandbox:
		// The pod's network namespace must be created inside its user
		// namespace, so that the pod owns it (sysfs, sysctls).
		if netPath != "" {
			return nil, fmt.Errorf("the pause container joins the network namespace %s: it must get a new one, inside its user namespace", netPath)
		}
	case idmap.RoleContainer:
		m := procNS.FindStringSubmatch(netPath)
		if m == nil {
			return nil, fmt.Errorf("the container does not join its pause container's network namespace (/proc/<pid>/ns/net), so its user namespace cannot be found (network namespace %q)", netPath)
		}
		p.pausePid, _ = strconv.Atoi(m[1])
	default:
		return nil, fmt.Errorf("annotation %s: %q is not %q or %q", idmap.AnnotationRole, p.role, idmap.RoleSandbox, idmap.RoleContainer)
	}
	p.rootPath, _ = obj(s["root"])["path"].(string)
	if p.rootPath == "" {
		return nil, fmt.Errorf("config.json has no root.path")
	}
	mounts := map[string]bool{}
	for _, v := range list(s["mounts"]) {
		m := obj(v)
		if d, _ := m["destination"].(string); d != "" {
			mounts[d] = isBind(m)
		}
	}
	for _, d := range p.idmapped {
		bind, ok := mounts[d]
		if !ok {
			return nil, fmt.Errorf("the mount at %s to id-map is not in config.json", d)
		}
		if !bind {
			return nil, fmt.Errorf("the mount at %s to id-map is not a bind mount", d)
		}
	}
	return p, nil
}

func isBind(m map[string]any) bool {
	if m["type"] == "bind" {
		return true
	}
	for _, o := range list(m["options"]) {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// dockerPingGroupRange is the net.ipv4.ping_group_range Docker gives every
// container with a network namespace of its own: all groups, which a user
// namespace cannot name (the kernel refuses unmapped groups).
const dockerPingGroupRange = "0 2147483647"

// apply edits the spec as the plan asks: the user namespace (new, or the
// pause container's), its mappings, the root filesystem at rootfs, and
// id-mapped bind mounts.
func (s spec) apply(p *plan, rootfs string) {
	linux := obj(s["linux"])
	userns := map[string]any{"type": "user"}
	if p.role == idmap.RoleContainer {
		userns["path"] = fmt.Sprintf("/proc/%d/ns/user", p.pausePid)
	}
	linux["namespaces"] = append(list(linux["namespaces"]), userns)
	linux["uidMappings"] = specMappings(p.uids)
	linux["gidMappings"] = specMappings(p.gids)
	if sc := obj(linux["sysctl"]); sc != nil && sc["net.ipv4.ping_group_range"] == dockerPingGroupRange {
		sc["net.ipv4.ping_group_range"] = "0 " + strconv.FormatUint(uint64(maxInside(p.gids)), 10)
	}
	obj(s["root"])["path"] = rootfs
	for _, v := range list(s["mounts"]) {
		m := obj(v)
		d, _ := m["destination"].(string)
		if !slices.Contains(p.idmapped, d) {
			continue
		}
		// runc (1.2 and newer) id-maps a bind mount with the container's
		// user namespace for "idmap", and every submount too for
		// "ridmap" (kubelet's volumes are recursive binds).
		opts := list(m["options"])
		opt := "idmap"
		if slices.Contains(opts, any("rbind")) {
			opt = "ridmap"
		}
		m["options"] = append(opts, opt)
	}
}

func specMappings(ms []idmap.Mapping) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = map[string]any{"containerID": m.ContainerID, "hostID": m.HostID, "size": m.Length}
	}
	return out
}

// maxInside is the highest ID the mappings name inside.
func maxInside(ms []idmap.Mapping) uint32 {
	var hi uint32
	for _, m := range ms {
		hi = max(hi, m.ContainerID+m.Length-1)
	}
	return hi
}
