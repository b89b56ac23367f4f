package docker

import (
	"slices"
	"strings"
	"testing"
)

func TestAPIVersionProblem(t *testing.T) {
	for _, tc := range []struct {
		daemonAPI string
		want      string // a substring of the reason; "" means accepted
	}{
		{"1.41", ""},                // Docker 20.10, the oldest supported
		{"1.43", ""},                // Docker 24
		{"1.56", ""},                // current
		{"1.100", ""},               // compared as numbers, not strings
		{"2.0", ""},                 // a future major version
		{"", ""},                    // not reported: the client speaks its newest
		{"1.40", "older than 1.41"}, // Docker 19.03
		{"1.39", "Docker API 1.39 is older than 1.41, the oldest Berth supports (Docker 20.10)"},
		{"1.9", "older than 1.41"}, // not "1.9" > "1.41" as strings
		{"0.99", "older than 1.41"},
		{"v1.44", "cannot read"},
		{"1.41.0", "cannot read"},
		{"latest", "cannot read"},
	} {
		t.Run(tc.daemonAPI, func(t *testing.T) {
			got := apiVersionProblem(tc.daemonAPI)
			if tc.want == "" {
				if got != "" {
					t.Errorf("apiVersionProblem(%q) = %q, want it accepted", tc.daemonAPI, got)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("apiVersionProblem(%q) = %q, want it refused with %q", tc.daemonAPI, got, tc.want)
			}
		})
	}
}

func TestImageStorageDirs(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    DaemonInfo
		want []string
	}{
		{"classic", DaemonInfo{RootDir: "/var/lib/docker", StorageDriver: "overlay2"},
			[]string{"/var/lib/docker/overlay2", "/var/lib/docker"}},
		{"no driver reported", DaemonInfo{RootDir: "/var/lib/docker"}, []string{"/var/lib/docker"}},
		{"containerd store, Docker's own containerd",
			DaemonInfo{RootDir: "/data/docker", StorageDriver: "overlayfs", ContainerdImageStore: true, ContainerdAddress: "/run/docker/containerd/containerd.sock"},
			[]string{"/data/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs", "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs", "/data/docker"}},
		{"containerd store, containerd address not reported (API < 1.46)",
			DaemonInfo{RootDir: "/var/lib/docker", StorageDriver: "overlayfs", ContainerdImageStore: true},
			[]string{"/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs", "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs", "/var/lib/docker"}},
		{"containerd store, the system containerd",
			DaemonInfo{RootDir: "/var/lib/docker", StorageDriver: "overlayfs", ContainerdImageStore: true, ContainerdAddress: "/run/containerd/containerd.sock"},
			[]string{"/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs", "/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs", "/var/lib/docker"}},
		{"containerd store, the system containerd under /var/run",
			DaemonInfo{RootDir: "/var/lib/docker", StorageDriver: "stargz", ContainerdImageStore: true, ContainerdAddress: "unix:///var/run/containerd/containerd.sock"},
			[]string{"/var/lib/containerd/io.containerd.snapshotter.v1.stargz", "/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.stargz", "/var/lib/docker"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.ImageStorageDirs(); !slices.Equal(got, tc.want) {
				t.Errorf("ImageStorageDirs() = %q\nwant %q", got, tc.want)
			}
		})
	}
}
