package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/idmap"
)

// API versions that bring a feature Berth offers only where the daemon
// has it (from the Engine API changelog).
const (
	// APIRecursiveReadOnly: BindOptions.ReadOnlyForceRecursive (Docker 25).
	APIRecursiveReadOnly = "1.44"
	// APICDI: CDI devices through DeviceRequests with driver "cdi", and
	// CDISpecDirs in the daemon's info (Docker 25; experimental until
	// Docker 28.2).
	APICDI = "1.44"
	// APIImageMounts: Mount type "image" with ImageOptions.Subpath
	// (Docker 28).
	APIImageMounts = "1.48"
	// APIDiscoveredDevices: the daemon's info lists the CDI devices it
	// knows (Docker 28.3).
	APIDiscoveredDevices = "1.50"
	// APIAnnotations: HostConfig.Annotations, which Docker copies into
	// the OCI spec (Docker 24); Berth's runtime wrapper reads its
	// instructions there.
	APIAnnotations = "1.43"
)

// ociFeaturesKey is the runtime status entry where Docker (API 1.44 and
// newer) reports a runtime's OCI features (`runc features`).
const ociFeaturesKey = "org.opencontainers.runtime-spec.features"

// rroRuntimes lists the runtimes whose OCI features include the "rro"
// mount option (recursively read-only), as Docker reports them.
func rroRuntimes(runtimes map[string]system.RuntimeWithStatus) []string {
	var out []string
	for name, rt := range runtimes {
		raw, ok := rt.Status[ociFeaturesKey]
		if !ok {
			continue
		}
		var f struct {
			MountOptions []string `json:"mountOptions"`
		}
		if json.Unmarshal([]byte(raw), &f) == nil && slices.Contains(f.MountOptions, "rro") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// RecursiveReadOnly says why a recursively read-only bind mount cannot be
// made for a container of the runtime handler (the default runtime when
// ""), or nil when it can. Docker makes one with mount_setattr(2)
// (Linux 5.12) through the runtime's "rro" mount option, and asks for it
// only on API 1.44 and newer.
func (d DaemonInfo) RecursiveReadOnly(handler string) error {
	if !d.APIAtLeast(APIRecursiveReadOnly) {
		return fmt.Errorf("recursively read-only mounts need Docker 25 (API %s) or newer; this Docker speaks API %s", APIRecursiveReadOnly, d.NegotiatedAPIVersion)
	}
	if !kernelAtLeast(d.KernelVersion, 5, 12) {
		return fmt.Errorf("recursively read-only mounts need mount_setattr(2), Linux 5.12 or newer; this kernel is %s", d.KernelVersion)
	}
	runtime := handler
	if runtime == "" {
		runtime = d.DefaultRuntime
	}
	if !slices.Contains(d.RROMountRuntimes, runtime) {
		return fmt.Errorf("the runtime %q does not support recursively read-only mounts (Docker does not report the \"rro\" mount option in its OCI features)", runtime)
	}
	return nil
}

// ImageMounts says why an image cannot be mounted into a container, or
// nil when it can.
func (d DaemonInfo) ImageMounts() error {
	if !d.APIAtLeast(APIImageMounts) {
		return fmt.Errorf("mounting an image needs Docker 28 (API %s) or newer; this Docker speaks API %s", APIImageMounts, d.NegotiatedAPIVersion)
	}
	return nil
}

// CDI says why CDI devices cannot be given to a container, or nil when
// they can.
func (d DaemonInfo) CDI() error {
	if !d.APIAtLeast(APICDI) {
		return fmt.Errorf("CDI devices need Docker 25 (API %s) or newer; this Docker speaks API %s", APICDI, d.NegotiatedAPIVersion)
	}
	if len(d.CDISpecDirs) == 0 {
		return fmt.Errorf("CDI is not enabled in this Docker (it reports no CDI spec directories): Docker 25 to 28.1 need the daemon's experimental mode or the \"cdi\" feature, and cdi-spec-dirs must not be empty")
	}
	return nil
}

// Checkpoints says why Docker cannot checkpoint a container's processes,
// or nil when its checkpoint API is there (CRIU may still fail).
func (d DaemonInfo) Checkpoints() error {
	if !d.Experimental {
		return fmt.Errorf("checkpointing processes needs Docker's checkpoint API, which only a daemon in experimental mode (dockerd --experimental) with CRIU installed has; this Docker is not in experimental mode")
	}
	return nil
}

// CDIDevices lists the CDI devices the daemon knows now (API 1.50 and
// newer; Docker rereads its CDI spec directories as they change).
func (c *Client) CDIDevices(ctx context.Context) ([]string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, Classify(err)
	}
	var out []string
	for _, d := range res.Info.DiscoveredDevices {
		if d.Source == "cdi" {
			out = append(out, d.ID)
		}
	}
	return out, nil
}

// usernsWrapperStatus says why the runtime idmap.RuntimeName cannot run
// pods with user namespaces of their own, from the OCI features Docker
// reports for it ("" when it can): it must be Berth's wrapper (which adds
// its marker to runc's features), on a kernel that id-maps overlay layers
// (the wrapper's probe), in front of a runc that makes id-mapped mounts
// (runc 1.2 and newer).
func usernsWrapperStatus(runtimes map[string]system.RuntimeWithStatus) string {
	rt, ok := runtimes[idmap.RuntimeName]
	if !ok {
		return fmt.Sprintf("Docker has no runtime named %s (Berth's OCI runtime wrapper, `berth oci-runtime`, registered in daemon.json \"runtimes\")", idmap.RuntimeName)
	}
	raw, ok := rt.Status[ociFeaturesKey]
	if !ok {
		return fmt.Sprintf("Docker does not report the OCI features of its runtime %s (Docker 25, API 1.44, and newer do), so Berth cannot tell that it is Berth's wrapper", idmap.RuntimeName)
	}
	var f struct {
		Linux struct {
			MountExtensions struct {
				IDMap struct {
					Enabled *bool `json:"enabled"`
				} `json:"idmap"`
			} `json:"mountExtensions"`
		} `json:"linux"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return fmt.Sprintf("the OCI features of the runtime %s do not parse: %v", idmap.RuntimeName, err)
	}
	if f.Annotations[idmap.FeatureWrapper] == "" {
		return fmt.Sprintf("the runtime %s (%s) is not Berth's OCI runtime wrapper (`berth oci-runtime`): its features lack %s", idmap.RuntimeName, rt.Path, idmap.FeatureWrapper)
	}
	if v := f.Annotations[idmap.FeatureIDMappedRootfs]; v != "true" {
		return fmt.Sprintf("this kernel cannot id-map a container's root filesystem as Berth's wrapper does (overlay layers id-mapped with mount_setattr, Linux 6.8 or newer): %s", strings.TrimPrefix(v, "false: "))
	}
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || !*e {
		return fmt.Sprintf("the runc behind the runtime %s cannot make id-mapped mounts (runc 1.2 and newer can)", idmap.RuntimeName)
	}
	return ""
}

// UserNamespaces says why a pod cannot have a user namespace of its own
// with the ID mappings kubelet picks, or nil when it can: Berth's OCI
// runtime wrapper runs such pods.
func (d DaemonInfo) UserNamespaces() error {
	switch {
	case d.UsernsRemap():
		return fmt.Errorf("Docker runs every container in its own user namespace (dockerd --userns-remap), inside which a pod's cannot be made")
	case !d.APIAtLeast(APIAnnotations):
		return fmt.Errorf("Berth's runtime wrapper needs Docker 24 (API %s) or newer, which passes annotations to the runtime; this Docker speaks API %s", APIAnnotations, d.NegotiatedAPIVersion)
	case d.UsernsWrapper != "":
		return fmt.Errorf("%s", d.UsernsWrapper)
	}
	return nil
}

// UsernsRemap is true when the daemon runs containers in a user namespace
// of its own (dockerd --userns-remap): every container, unless it asks for
// the host's user namespace.
func (d DaemonInfo) UsernsRemap() bool { return d.HasSecurityOption("userns") }

// SELinux is true when the daemon labels containers with SELinux: it lists
// "name=selinux" in its security options only when it runs with
// --selinux-enabled on a host whose SELinux is on (without the flag it
// turns its SELinux support off, and relabels nothing). This, not the host
// alone, is what decides whether a mount's ":Z" does anything, as
// containerd's enable_selinux does for containerd.
func (d DaemonInfo) SELinux() bool { return d.HasSecurityOption("selinux") }

// kernelAtLeast compares a kernel release ("6.1.0-18-amd64") with
// major.minor; an unreadable release is taken to be older.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	min, err2 := strconv.Atoi(minStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && min >= minor)
}
