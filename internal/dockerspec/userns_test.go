package dockerspec

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestValidatePodUserns covers the CRI's rules for a pod's user
// namespace: POD or NODE, one mapping each for uids and gids, ID 0 mapped.
func TestValidatePodUserns(t *testing.T) {
	m := func(container, host, length uint32) *runtimeapi.IDMapping {
		return &runtimeapi.IDMapping{ContainerId: container, HostId: host, Length: length}
	}
	one := []*runtimeapi.IDMapping{m(0, 100000, 65536)}
	for _, tc := range []struct {
		name string
		u    *runtimeapi.UserNamespace
		err  string
	}{
		{"kubelet's", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, ""},
		{"host's", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}, ""},
		{"container mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER, Uids: one, Gids: one}, "userns_options.mode: CONTAINER is not supported for a pod"},
		{"target mode", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET, Uids: one, Gids: one}, "userns_options.mode: TARGET is not supported for a pod"},
		{"no uids", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Gids: one}, "userns_options.uids: a pod's user namespace needs exactly one mapping, not 0"},
		{"two gids", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: []*runtimeapi.IDMapping{m(0, 100000, 10), m(10, 200000, 10)}},
			"userns_options.gids: a pod's user namespace needs exactly one mapping, not 2"},
		{"root unmapped", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(1, 100000, 65536)}, Gids: one},
			"userns_options.uids[0].container_id: is 1: the mapping must map ID 0"},
		{"empty", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: []*runtimeapi.IDMapping{m(0, 1, 0)}}, "userns_options.gids[0].length: must not be 0"},
		{"overflow", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(0, 4294967295, 2)}, Gids: one}, "overflow 32 bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sandboxConfig()
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.u}}
			err := ValidatePodSandboxConfig(c)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err = %v, want InvalidArgument %q", err, tc.err)
			}
		})
	}
}
