// Package version reports the build's version, set at link time.
package version

import "runtime/debug"

// Version and GitCommit are set with -ldflags "-X ...". Version falls back to
// the module version recorded in the binary.
var (
	Version   = ""
	GitCommit = ""
)

// RuntimeName is what Berth reports as its runtime name in CRI Version. It is
// "docker", as cri-dockerd reports, because kubelet and tools key behaviour
// (e.g. log format expectations) on the engine, not on the shim.
const RuntimeName = "docker"

// String returns the version of this build.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "0.1.0-dev"
}
