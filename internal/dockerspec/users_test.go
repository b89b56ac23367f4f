package dockerspec

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www:x:33:44:www:/var/www:/bin/false
`

func TestStrictUser(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"", "0:0"},
		{"0", "0:0"},
		{"root", "root:0"},
		{"33", "33:44"},
		{"www", "www:44"},
		{"www:7", "www:7"},
		{"1234", "1234:0"},   // a uid the image does not know: runc's gid 0
		{"nobody", "nobody"}, // a name it does not know: Docker refuses it
		{"1000:1000", "1000:1000"},
	} {
		if got := StrictUser([]byte(testPasswd), tc.user); got != tc.want {
			t.Errorf("StrictUser(%q) = %q, want %q", tc.user, got, tc.want)
		}
	}
}

func TestCheckUsernsMappings(t *testing.T) {
	remap := []byte("         0     100000      65536\n")
	want := func(host uint32) *runtimeapi.UserNamespace {
		m := []*runtimeapi.IDMapping{{HostId: host, ContainerId: 0, Length: 65536}}
		return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
	}
	if err := CheckUsernsMappings(want(100000), remap, remap); err != nil {
		t.Errorf("matching mappings: %v", err)
	}
	if err := CheckUsernsMappings(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}, remap, remap); err != nil {
		t.Errorf("no mappings asked for: %v", err)
	}
	err := CheckUsernsMappings(want(200000), remap, remap)
	if err == nil || !strings.Contains(err.Error(), "uids: the pod asks for 0-65535 → host 200000-265535, but Docker maps every container's uids as 0-65535 → host 100000-165535") {
		t.Errorf("different mappings: %v", err)
	}
	host := []byte("         0          0 4294967295\n")
	if err := CheckUsernsMappings(want(100000), host, host); err == nil || !strings.Contains(err.Error(), "uids") {
		t.Errorf("the host's namespace: %v", err)
	}
}
