package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/system"
)

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"5.12.0", true},
		{"5.11.22", false},
		{"6.1.0-18-amd64", true},
		{"6.18.44-fc-v769", true},
		{"4.19.0", false},
		{"5.15-rc1", true},
		{"", false},
		{"garbage", false},
	} {
		if got := kernelAtLeast(tc.release, 5, 12); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 12) = %v, want %v", tc.release, got, tc.want)
		}
	}
}

func TestRROMountRuntimes(t *testing.T) {
	runtimes := map[string]system.RuntimeWithStatus{
		"runc":     {Status: map[string]string{ociFeaturesKey: `{"mountOptions":["ro","rro","rbind"]}`}},
		"old-runc": {Status: map[string]string{ociFeaturesKey: `{"mountOptions":["ro","rbind"]}`}},
		"kata":     {}, // no features reported
		"broken":   {Status: map[string]string{ociFeaturesKey: `{`}},
	}
	if got := rroRuntimes(runtimes); !slices.Equal(got, []string{"runc"}) {
		t.Errorf("rroRuntimes = %v, want [runc]", got)
	}
}

func TestFeatureSupport(t *testing.T) {
	current := DaemonInfo{
		NegotiatedAPIVersion: "1.56", KernelVersion: "6.1.0", DefaultRuntime: "runc",
		RROMountRuntimes: []string{"runc"}, CDISpecDirs: []string{"/etc/cdi"}, Experimental: true,
	}
	old := DaemonInfo{NegotiatedAPIVersion: "1.41", KernelVersion: "6.1.0", DefaultRuntime: "runc"}
	for _, tc := range []struct {
		name string
		err  error
		want string // "" = supported
	}{
		{"rro current default", current.RecursiveReadOnly(""), ""},
		{"rro current runc", current.RecursiveReadOnly("runc"), ""},
		{"rro current kata", current.RecursiveReadOnly("kata"), `runtime "kata" does not support`},
		{"rro 20.10", old.RecursiveReadOnly(""), "API 1.44"},
		{"rro old kernel", func() error { d := current; d.KernelVersion = "5.10.0"; return d.RecursiveReadOnly("") }(), "Linux 5.12"},
		{"image mounts current", current.ImageMounts(), ""},
		{"image mounts 25", func() error { d := current; d.NegotiatedAPIVersion = "1.47"; return d.ImageMounts() }(), "Docker 28 (API 1.48)"},
		{"cdi current", current.CDI(), ""},
		{"cdi 20.10", old.CDI(), "API 1.44"},
		{"cdi off", func() error { d := current; d.CDISpecDirs = nil; return d.CDI() }(), "not enabled"},
		{"checkpoints experimental", current.Checkpoints(), ""},
		{"checkpoints", old.Checkpoints(), "experimental mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.want == "" && tc.err != nil:
				t.Errorf("got %v, want supported", tc.err)
			case tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", tc.err, tc.want)
			}
		})
	}
	if !(DaemonInfo{SecurityOptions: []string{"name=seccomp,profile=default", "name=userns"}}).UsernsRemap() {
		t.Error("UsernsRemap false with name=userns")
	}
	if (DaemonInfo{SecurityOptions: []string{"name=seccomp,profile=default"}}).UsernsRemap() {
		t.Error("UsernsRemap true without userns")
	}
	if !(DaemonInfo{SecurityOptions: []string{"name=seccomp,profile=builtin", "name=selinux"}}).SELinux() {
		t.Error("SELinux false with name=selinux")
	}
	if (DaemonInfo{SecurityOptions: []string{"name=seccomp,profile=builtin", "name=cgroupns"}}).SELinux() {
		t.Error("SELinux true without selinux")
	}
}

func TestUsernsWrapperStatus(t *testing.T) {
	const good = `{"linux":{"mountExtensions":{"idmap":{"enabled":true}}},"annotations":{"io.berth.userns.wrapper":"1","io.berth.userns.idmapped-rootfs":"true"}}`
	for _, tc := range []struct {
		name     string
		runtimes map[string]system.RuntimeWithStatus
		want     string
	}{
		{"wrapper", map[string]system.RuntimeWithStatus{"berth-userns": {Status: map[string]string{ociFeaturesKey: good}}}, ""},
		{"none registered", map[string]system.RuntimeWithStatus{"runc": {}}, "Docker has no runtime named berth-userns"},
		{"no features (Docker < 25)", map[string]system.RuntimeWithStatus{"berth-userns": {}}, "does not report the OCI features"},
		{"plain runc under the name", map[string]system.RuntimeWithStatus{"berth-userns": {Runtime: system.Runtime{Path: "/usr/bin/runc"}, Status: map[string]string{ociFeaturesKey: `{"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}`}}},
			"(/usr/bin/runc) is not Berth's OCI runtime wrapper"},
		{"kernel cannot", map[string]system.RuntimeWithStatus{"berth-userns": {Status: map[string]string{ociFeaturesKey: strings.Replace(good, `"true"`, `"false: lowerdir+: invalid argument"`, 1)}}},
			"cannot id-map a container's root filesystem as Berth's wrapper does (overlay layers id-mapped with mount_setattr, Linux 6.8 or newer): lowerdir+: invalid argument"},
		{"runc 1.1", map[string]system.RuntimeWithStatus{"berth-userns": {Status: map[string]string{ociFeaturesKey: strings.Replace(good, `"mountExtensions":{"idmap":{"enabled":true}}`, `"x":1`, 1)}}},
			"cannot make id-mapped mounts (runc 1.2 and newer can)"},
		{"garbage", map[string]system.RuntimeWithStatus{"berth-userns": {Status: map[string]string{ociFeaturesKey: `{`}}}, "do not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := usernsWrapperStatus(tc.runtimes)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("status = %q, want %q", got, tc.want)
			}
		})
	}
	ok := DaemonInfo{NegotiatedAPIVersion: "1.56"}
	if err := ok.UserNamespaces(); err != nil {
		t.Errorf("UserNamespaces = %v", err)
	}
	for _, d := range []DaemonInfo{
		{NegotiatedAPIVersion: "1.42"},
		{NegotiatedAPIVersion: "1.56", SecurityOptions: []string{"name=userns"}},
		{NegotiatedAPIVersion: "1.56", UsernsWrapper: "no"},
	} {
		if d.UserNamespaces() == nil {
			t.Errorf("UserNamespaces nil for %+v", d)
		}
	}
}
