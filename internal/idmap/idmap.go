// Package idmap is the contract between Berth and its OCI runtime wrapper
// (berth oci-runtime) for pods with a user namespace of their own: the
// annotations Berth puts on a container's create request and the ID
// mappings they carry. It does no I/O.
package idmap

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// RuntimeName is the name Docker knows Berth's OCI runtime wrapper by
// (daemon.json "runtimes", or dockerd --add-runtime). Containers of pods
// with a user namespace of their own run through it.
const RuntimeName = "berth-userns"

// Annotations Berth sets (Docker's HostConfig.Annotations, API 1.43 and
// newer, which Docker copies into the OCI spec's annotations): the wrapper
// acts on a container only when AnnotationUIDs is there, and refuses to run
// it when it cannot apply what they ask.
const (
	// AnnotationUIDs and AnnotationGIDs are the pod's ID mappings, in
	// Format's form.
	AnnotationUIDs = "io.berth.userns.uids"
	AnnotationGIDs = "io.berth.userns.gids"
	// AnnotationRole is RoleSandbox for a pod's pause container, which
	// creates the pod's user namespace, and RoleContainer for the others,
	// which join it.
	AnnotationRole = "io.berth.userns.role"
	// AnnotationIDMappedMounts is a JSON list of the container paths of
	// bind mounts to id-map with the pod's mappings (CRI mounts with
	// uid_mappings; kubelet asks that for every volume of such a pod).
	AnnotationIDMappedMounts = "io.berth.userns.idmapped-mounts"
)

// Roles in AnnotationRole.
const (
	RoleSandbox   = "sandbox"
	RoleContainer = "container"
)

// Mapping is one ID mapping: Length IDs from ContainerID inside the user
// namespace are HostID onwards outside (a line of /proc/<pid>/uid_map).
type Mapping struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Length      uint32 `json:"size"`
}

// String is the uid_map form: "container host length".
func (m Mapping) String() string {
	return fmt.Sprintf("%d %d %d", m.ContainerID, m.HostID, m.Length)
}

// Format renders mappings for an annotation: "container:host:length",
// comma-separated.
func Format(ms []Mapping) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Length)
	}
	return strings.Join(parts, ",")
}

// Parse reads Format's form back, and checks what the wrapper relies on:
// at least one mapping, no empty or overflowing range.
func Parse(s string) ([]Mapping, error) {
	if s == "" {
		return nil, fmt.Errorf("no ID mappings")
	}
	var out []Mapping
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("ID mapping %q: want container:host:length", part)
		}
		var v [3]uint32
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("ID mapping %q: %v", part, err)
			}
			v[i] = uint32(n)
		}
		m := Mapping{ContainerID: v[0], HostID: v[1], Length: v[2]}
		if err := m.check(); err != nil {
			return nil, fmt.Errorf("ID mapping %q: %v", part, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func (m Mapping) check() error {
	if m.Length == 0 {
		return fmt.Errorf("length 0")
	}
	if uint64(m.ContainerID)+uint64(m.Length) > 1<<32 || uint64(m.HostID)+uint64(m.Length) > 1<<32 {
		return fmt.Errorf("range overflows 32 bits")
	}
	return nil
}

// HostRoot is the host ID that ID 0 inside maps to, and whether it is
// mapped.
func HostRoot(ms []Mapping) (uint32, bool) {
	for _, m := range ms {
		if m.ContainerID == 0 {
			return m.HostID, true
		}
	}
	return 0, false
}

// ParseProcMap reads /proc/<pid>/uid_map or gid_map.
func ParseProcMap(data []byte) ([]Mapping, error) {
	var out []Mapping
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("ID map line %q: want 3 fields", line)
		}
		var v [3]uint32
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("ID map line %q: %v", line, err)
			}
			v[i] = uint32(n)
		}
		out = append(out, Mapping{ContainerID: v[0], HostID: v[1], Length: v[2]})
	}
	return out, nil
}

// Equal reports whether two mapping lists are the same, in order.
func Equal(a, b []Mapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FormatMounts and ParseMounts are AnnotationIDMappedMounts' JSON form.
func FormatMounts(paths []string) string {
	b, _ := json.Marshal(paths)
	return string(b)
}

// ParseMounts reads AnnotationIDMappedMounts; empty is none.
func ParseMounts(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("annotation %s: %v", AnnotationIDMappedMounts, err)
	}
	return out, nil
}

// Annotations the wrapper adds to runc's features (`berth oci-runtime
// features`), which Docker reports per runtime in its info.
const (
	// FeatureWrapper says the runtime is Berth's wrapper, of
	// WrapperVersion.
	FeatureWrapper = "io.berth.userns.wrapper"
	// FeatureIDMappedRootfs is "true" when the kernel id-maps overlay
	// layers as the wrapper does, else "false: <why>".
	FeatureIDMappedRootfs = "io.berth.userns.idmapped-rootfs"
	// WrapperVersion is the version of this contract.
	WrapperVersion = "1"
)
