package ociruntime

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

const mountinfo = `47 27 254:0 /tmp/d /tmp/d rw,relatime shared:3 - ext4 /dev/vda rw
51 47 0:40 / /tmp/d/rootfs/c1 rw,relatime shared:4 - overlay overlay rw,lowerdir=/s/2/fs:/s/1/fs,upperdir=/s/3/fs,workdir=/s/3/work,index=off,redirect_dir=on,userxattr
69 51 0:42 / /tmp/d/rootfs/c1 rw,relatime - overlay berth-userns rw,lowerdir+=/,lowerdir+=/,upperdir=/s/3/fs,workdir=/s/3/work
70 27 0:43 / /with\040space rw - tmpfs tmpfs rw
`

func TestFindMount(t *testing.T) {
	m, ok := findMount([]byte(mountinfo), "/tmp/d/rootfs/c1")
	if !ok || m.source != "berth-userns" || m.fsType != "overlay" {
		t.Errorf("topmost mount = %+v, %v", m, ok)
	}
	if m, ok := findMount([]byte(mountinfo), "/with space"); !ok || m.fsType != "tmpfs" {
		t.Errorf("escaped mount point = %+v, %v", m, ok)
	}
	if _, ok := findMount([]byte(mountinfo), "/tmp"); ok {
		t.Error("found a mount that is not there")
	}
}

func TestParseOverlay(t *testing.T) {
	l, err := parseOverlay("rw,lowerdir=/s/2/fs:/s/1/fs,upperdir=/s/3/fs,workdir=/s/3/work,index=off,redirect_dir=on,userxattr")
	if err != nil {
		t.Fatal(err)
	}
	want := overlayLayers{lower: []string{"/s/2/fs", "/s/1/fs"}, upper: "/s/3/fs", work: "/s/3/work",
		carried: [][2]string{{"index", "off"}, {"redirect_dir", "on"}}, carriedFlags: []string{"userxattr"}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("got %+v, want %+v", l, want)
	}
	l, err = parseOverlay("rw,lowerdir+=/a,lowerdir+=/b\\054c,upperdir=/u,workdir=/w")
	if err != nil || !reflect.DeepEqual(l.lower, []string{"/a", "/b,c"}) {
		t.Errorf("lowerdir+ = %v, %v", l.lower, err)
	}
	for _, tc := range []struct{ opts, err string }{
		{"rw,upperdir=/u,workdir=/w", "no lower layers"},
		{"rw,lowerdir=/a", "no upper or work"},
		{"rw,lowerdir=/a,datadir+=/d,upperdir=/u,workdir=/w", "datadir+"},
		{"rw,lowerdir=/a\\134:b,upperdir=/u,workdir=/w", "escaped"},
	} {
		if _, err := parseOverlay(tc.opts); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseOverlay(%q) error = %v, want %q", tc.opts, err, tc.err)
		}
	}
}

// TestMain lets the test binary stand in for berth: newUserns and probe
// run `<self> oci-runtime …`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "oci-runtime" {
		os.Exit(Run(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestProbe runs the kernel probe for real: this kernel (6.18 on the
// project's machines; Linux 6.8 or newer) must id-map overlay layers.
func TestProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (mounts)")
	}
	if err := probe(); err != nil {
		t.Fatalf("probe: %v", err)
	}
}
