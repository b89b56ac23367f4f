package hostinfo

import (
	"os"
	"testing"
)

func TestFlagValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/usr/sbin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"}, "/run/containerd/containerd.sock"},
		{[]string{"dockerd", "--containerd", "/run/c.sock", "--debug"}, "/run/c.sock"},
		{[]string{"dockerd", "--containerd-namespace=moby"}, ""},
		{[]string{"dockerd", "--containerd"}, ""},
		{nil, ""},
	} {
		if got := flagValue(tc.args, "--containerd"); got != tc.want {
			t.Errorf("flagValue(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestParentOf(t *testing.T) {
	for stat, want := range map[string]int{
		"42 (containerd) S 7 42 42 0 -1":     7,
		"43 (a (weird) name) R 9 43 43 0 -1": 9,
		"44 (sp ace) S 1 44":                 1,
		"garbage":                            -1,
		"45 (x) S":                           -1,
	} {
		if got := parentOf([]byte(stat)); got != want {
			t.Errorf("parentOf(%q) = %d, want %d", stat, got, want)
		}
	}
	// This process's parent, as the kernel has it.
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if got := parentOf(stat); got != os.Getppid() {
		t.Errorf("parentOf(/proc/self/stat) = %d, want %d", got, os.Getppid())
	}
}
