package ociruntime

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/idmap"
)

// dockerSpec is the shape of the config.json Docker writes (trimmed).
func dockerSpec(role, netns string, extra map[string]string) string {
	ann := map[string]string{
		idmap.AnnotationUIDs: "0:100000:65536",
		idmap.AnnotationGIDs: "0:200000:65536",
		idmap.AnnotationRole: role,
	}
	for k, v := range extra {
		ann[k] = v
	}
	a, _ := json.Marshal(ann)
	net := `{"type":"network"}`
	if netns != "" {
		net = `{"type":"network","path":"` + netns + `"}`
	}
	return `{"ociVersion":"1.2.1","root":{"path":"/var/lib/docker/rootfs/overlayfs/c1"},"annotations":` + string(a) + `,
	"mounts":[{"destination":"/proc","type":"proc","source":"proc"},
	  {"destination":"/vol","type":"bind","source":"/data","options":["rbind","rprivate"]},
	  {"destination":"/file","source":"/f","options":["bind"]}],
	"linux":{"namespaces":[{"type":"mount"},` + net + `],
	  "resources":{"memory":{"limit":9223372036854771712}},
	  "sysctl":{"net.ipv4.ping_group_range":"0 2147483647"},
	  "futureField":{"x":1}}}`
}

func TestReadPlanAndApply(t *testing.T) {
	s, err := decodeSpec([]byte(dockerSpec(idmap.RoleContainer, "/proc/42/ns/net", map[string]string{idmap.AnnotationIDMappedMounts: `["/vol","/file"]`})))
	if err != nil {
		t.Fatal(err)
	}
	if !wantsUserns(s) {
		t.Fatal("wantsUserns = false")
	}
	p, err := readPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	if p.pausePid != 42 || p.rootPath != "/var/lib/docker/rootfs/overlayfs/c1" || len(p.idmapped) != 2 {
		t.Fatalf("plan = %+v", p)
	}
	s.apply(p, "/run/berth-userns/c1")
	out, err := s.encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"path":"/proc/42/ns/user","type":"user"}`,
		`"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]`,
		`"gidMappings":[{"containerID":0,"hostID":200000,"size":65536}]`,
		`"root":{"path":"/run/berth-userns/c1"}`,
		`"options":["rbind","rprivate","ridmap"]`,
		`"options":["bind","idmap"]`,
		`"net.ipv4.ping_group_range":"0 65535"`,
		// Numbers keep their precision, unknown fields stay.
		`"limit":9223372036854771712`,
		`"futureField":{"x":1}`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("spec lacks %s:\n%s", want, out)
		}
	}
}

func TestApplySandbox(t *testing.T) {
	s, _ := decodeSpec([]byte(dockerSpec(idmap.RoleSandbox, "", nil)))
	p, err := readPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(p, "/m")
	out, _ := s.encode()
	if !strings.Contains(string(out), `{"type":"network"},{"type":"user"}`) {
		t.Errorf("no new user namespace:\n%s", out)
	}
	if strings.Contains(string(out), "idmap") {
		t.Errorf("a mount was id-mapped that was not asked for:\n%s", out)
	}
}

func TestNoAnnotationNoUserns(t *testing.T) {
	s, _ := decodeSpec([]byte(`{"annotations":{"other":"x"},"linux":{}}`))
	if wantsUserns(s) {
		t.Error("a container without Berth's annotation would be changed")
	}
}

func TestReadPlanRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, spec, err string
	}{
		{"sandbox joining a network namespace", dockerSpec(idmap.RoleSandbox, "/var/run/docker/netns/x", nil), "must get a new one"},
		{"container not joining its pod", dockerSpec(idmap.RoleContainer, "", nil), "cannot be found"},
		{"unknown role", dockerSpec("other", "", nil), "is not"},
		{"bad mapping", dockerSpec(idmap.RoleSandbox, "", map[string]string{idmap.AnnotationUIDs: "0:1"}), idmap.AnnotationUIDs},
		{"no gid mapping", dockerSpec(idmap.RoleSandbox, "", map[string]string{idmap.AnnotationGIDs: ""}), idmap.AnnotationGIDs},
		{"id-mapping a missing mount", dockerSpec(idmap.RoleSandbox, "", map[string]string{idmap.AnnotationIDMappedMounts: `["/nope"]`}), "not in config.json"},
		{"id-mapping a non-bind mount", dockerSpec(idmap.RoleSandbox, "", map[string]string{idmap.AnnotationIDMappedMounts: `["/proc"]`}), "not a bind mount"},
		{"a user namespace already", strings.Replace(dockerSpec(idmap.RoleSandbox, "", nil), `{"type":"mount"}`, `{"type":"user"}`, 1), "already has a user namespace"},
		{"no root", strings.Replace(dockerSpec(idmap.RoleSandbox, "", nil), `"root":{"path":"/var/lib/docker/rootfs/overlayfs/c1"},`, "", 1), "no root.path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := decodeSpec([]byte(tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readPlan(s); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("readPlan error = %v, want %q", err, tc.err)
			}
		})
	}
}
