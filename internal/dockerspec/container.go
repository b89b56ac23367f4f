package dockerspec

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client/pkg/versions"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/store"
)

// API versions that change how a request must be shaped.
const (
	// APIMountCreateMountpoint: the Mount API can create a missing host
	// path (BindOptions.CreateMountpoint), as legacy binds always did.
	APIMountCreateMountpoint = "1.42"
	// APIReadOnlyNonRecursive: Docker 25 made read-only binds recursively
	// read-only; CRI's readonly is not, so it must ask for that.
	APIReadOnlyNonRecursive = "1.44"
)

// ContainerOptions are the node-wide facts a container's create request
// depends on. Everything that needs I/O (reading a seccomp profile, listing
// the host's devices and capabilities) is done by the caller and passed in.
type ContainerOptions struct {
	RootDir string
	// APIVersion is the negotiated Docker API version.
	APIVersion string
	// CgroupVersion is "1" or "2".
	CgroupVersion string
	OOM           OOMPolicy
	// HostCapabilities are the capabilities in the host's bounding set,
	// when it lacks some (nil when it has them all): privileged containers
	// then get these instead of Docker's privileged mode, which asks for
	// every capability and fails.
	HostCapabilities []string
	// HostDevices are the host's device nodes, for privileged containers
	// that do not use Docker's privileged mode.
	HostDevices []string
	// AppArmor is true when the kernel has AppArmor.
	AppArmor bool
	// SELinux is true when the daemon labels containers (it lists
	// "name=selinux" in its security options: dockerd --selinux-enabled on
	// a host with SELinux on). Only then does Docker relabel a mount, so
	// only then does selinux_relabel change how a mount is made.
	SELinux bool
	// ReadFile reads a Localhost seccomp profile.
	ReadFile func(path string) ([]byte, error)
	// HostPaths maps each mount's host path to the path to bind (symlinks
	// resolved, created if missing), as the caller prepared it.
	HostPaths map[string]string
	// LogMaxSize and LogMaxFile bound Docker's own json-file copy of the
	// container's output.
	LogMaxSize string
	LogMaxFile string

	// What the connected daemon can do: nil when it can, else why not
	// (from docker.DaemonInfo).
	//
	// RecursiveReadOnly is for the pod's runtime handler.
	RecursiveReadOnly error
	ImageMounts       error
	CDI               error
	// CDIDevices are the CDI devices the daemon knows, when it reports
	// them (API 1.50 and newer); nil when it does not say.
	CDIDevices []string
	// UsernsRemap is true when the daemon puts containers in a user
	// namespace of its own (dockerd --userns-remap).
	UsernsRemap bool
	// Userns says why Berth's runtime wrapper cannot give pods user
	// namespaces of their own on this daemon; nil when it can.
	Userns error
}

// containerMeta is the JSON in LabelContainerMeta: what a container's
// record needs that Docker does not keep in a form CRI can read back.
type containerMeta struct {
	Metadata    *runtimeapi.ContainerMetadata `json:"metadata"`
	Labels      map[string]string             `json:"labels,omitempty"`
	Annotations map[string]string             `json:"annotations,omitempty"`
	Image       *runtimeapi.ImageSpec         `json:"image,omitempty"`
	LogPath     string                        `json:"logPath,omitempty"`
	Mounts      []*runtimeapi.Mount           `json:"mounts,omitempty"`
	Hugepages   []*runtimeapi.HugepageLimit   `json:"hugepages,omitempty"`
	Unified     map[string]string             `json:"unified,omitempty"`
	Stdin       bool                          `json:"stdin,omitempty"`
	StdinOnce   bool                          `json:"stdinOnce,omitempty"`
	Tty         bool                          `json:"tty,omitempty"`
	Privileged  bool                          `json:"privileged,omitempty"`
}

// ValidateContainerConfig checks what CreateContainer needs from its
// config, naming the first offending field.
func ValidateContainerConfig(c *runtimeapi.ContainerConfig) error {
	if c == nil {
		return errdefs.InvalidArgument("config", "is required")
	}
	if c.GetMetadata() == nil {
		return errdefs.InvalidArgument("config.metadata", "is required")
	}
	if err := validateNamePart("config.metadata.name", c.GetMetadata().GetName()); err != nil {
		return err
	}
	if c.GetImage().GetImage() == "" {
		return errdefs.InvalidArgument("config.image.image", "must not be empty")
	}
	if lp := c.GetLogPath(); lp != "" && (filepath.IsAbs(lp) || slices.Contains(strings.Split(filepath.ToSlash(lp), "/"), "..")) {
		return errdefs.InvalidArgument("config.log_path", "%q must be a path inside the pod's log directory", lp)
	}
	for i, kv := range c.GetEnvs() {
		if kv.GetKey() == "" || strings.Contains(kv.GetKey(), "=") {
			return errdefs.InvalidArgument(fmt.Sprintf("config.envs[%d].key", i), "%q is not a variable name", kv.GetKey())
		}
	}
	for i, m := range c.GetMounts() {
		if err := validateMount(fmt.Sprintf("config.mounts[%d]", i), m); err != nil {
			return err
		}
	}
	for i, d := range c.GetDevices() {
		field := fmt.Sprintf("config.devices[%d]", i)
		if !filepath.IsAbs(d.GetHostPath()) {
			return errdefs.InvalidArgument(field+".host_path", "%q must be an absolute path", d.GetHostPath())
		}
		if d.GetContainerPath() != "" && !filepath.IsAbs(d.GetContainerPath()) {
			return errdefs.InvalidArgument(field+".container_path", "%q must be an absolute path", d.GetContainerPath())
		}
		if strings.Trim(d.GetPermissions(), "rwm") != "" {
			return errdefs.InvalidArgument(field+".permissions", "%q is not a combination of r, w and m", d.GetPermissions())
		}
	}
	for i, d := range c.GetCDIDevices() {
		if !cdiName.MatchString(d.GetName()) {
			return errdefs.InvalidArgument(fmt.Sprintf("config.CDI_devices[%d].name", i), "%q is not a fully qualified CDI device name (vendor.com/class=name)", d.GetName())
		}
	}
	sc := c.GetLinux().GetSecurityContext()
	if len(sc.GetCapabilities().GetAddAmbientCapabilities()) > 0 {
		return fmt.Errorf("config.linux.security_context.capabilities.add_ambient_capabilities: Docker cannot set ambient capabilities: %w", errdefs.ErrFailedPrecondition)
	}
	if _, ok := runtimeapi.SupplementalGroupsPolicy_name[int32(sc.GetSupplementalGroupsPolicy())]; !ok {
		return errdefs.InvalidArgument("config.linux.security_context.supplemental_groups_policy", "%d is not a policy", sc.GetSupplementalGroupsPolicy())
	}
	ns := sc.GetNamespaceOptions()
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET && ns.GetTargetId() == "" {
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.target_id", "must name a container when pid is TARGET")
	}
	switch mode := ns.GetUsernsOptions().GetMode(); mode {
	case runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_CONTAINER:
		return fmt.Errorf("config.linux.security_context.namespace_options.userns_options.mode: CONTAINER: Docker cannot give a container a user namespace of its own, only its pod's: %w", errdefs.ErrFailedPrecondition)
	default:
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.userns_options.mode", "%v is not a user namespace mode: use POD or NODE", mode)
	}
	if sc.GetRunAsUsername() != "" && sc.GetRunAsUser() != nil {
		return errdefs.InvalidArgument("config.linux.security_context.run_as_username", "cannot be set together with run_as_user")
	}
	if _, ok := runtimeapi.Signal_name[int32(c.GetStopSignal())]; !ok {
		return errdefs.InvalidArgument("config.stop_signal", "%d is not a signal", c.GetStopSignal())
	}
	return nil
}

// cdiName is a fully qualified CDI device name: vendor.com/class=name.
var cdiName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)+=[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

// validateMount checks one mount, whatever the daemon: what needs a newer
// Docker is refused by ContainerSpec.
func validateMount(field string, m *runtimeapi.Mount) error {
	if !filepath.IsAbs(m.GetContainerPath()) {
		return errdefs.InvalidArgument(field+".container_path", "%q must be an absolute path", m.GetContainerPath())
	}
	if m.GetImage().GetImage() != "" {
		if m.GetHostPath() != "" {
			return errdefs.InvalidArgument(field+".host_path", "must be empty when image is set (an image volume)")
		}
		if p := m.GetImageSubPath(); p != "" && !filepath.IsLocal(p) {
			return errdefs.InvalidArgument(field+".image_sub_path", "%q must be a relative path inside the image", p)
		}
	} else {
		if !filepath.IsAbs(m.GetHostPath()) {
			return errdefs.InvalidArgument(field+".host_path", "%q must be an absolute path", m.GetHostPath())
		}
		if m.GetImageSubPath() != "" {
			return errdefs.InvalidArgument(field+".image_sub_path", "is only for image volumes (image is not set)")
		}
	}
	if len(m.GetMountOptions()) > 0 {
		return fmt.Errorf("%s.mount_options: %s: Docker's API cannot pass mount options such as noexec, nodev or nosuid to a bind mount "+
			"(its local volume driver applies them only to read-only binds): %w", field, strings.Join(m.GetMountOptions(), ","), errdefs.ErrFailedPrecondition)
	}
	if _, ok := runtimeapi.MountPropagation_name[int32(m.GetPropagation())]; !ok {
		return errdefs.InvalidArgument(field+".propagation", "%d is not a propagation mode", m.GetPropagation())
	}
	if m.GetRecursiveReadOnly() {
		if !m.GetReadonly() {
			return errdefs.InvalidArgument(field+".recursive_read_only", "needs readonly")
		}
		if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
			return errdefs.InvalidArgument(field+".propagation", "a recursively read-only mount must be private")
		}
	}
	return nil
}

// ContainerSpec translates a validated ContainerConfig for the sandbox sb
// into a Docker create request.
func ContainerSpec(sb *store.Sandbox, c *runtimeapi.ContainerConfig, o ContainerOptions) (*CreateSpec, error) {
	lc := c.GetLinux()
	sc := lc.GetSecurityContext()
	logPath := ""
	if c.GetLogPath() != "" {
		logPath = filepath.Join(sb.LogDirectory, c.GetLogPath())
	}
	meta := containerMeta{
		Metadata:    c.GetMetadata(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		Image:       c.GetImage(),
		LogPath:     logPath,
		Mounts:      c.GetMounts(),
		Hugepages:   nonZeroHugepages(lc.GetResources().GetHugepageLimits()),
		Unified:     lc.GetResources().GetUnified(),
		Stdin:       c.GetStdin(),
		StdinOnce:   c.GetStdinOnce(),
		Tty:         c.GetTty(),
		Privileged:  sc.GetPrivileged(),
	}
	labels := dockerLabels(c.GetLabels(), c.GetAnnotations(), map[string]string{
		LabelType:          TypeContainer,
		LabelSandboxID:     sb.ID,
		LabelLogPath:       logPath,
		LabelContainerMeta: mustJSON(meta),
		LabelRoot:          o.RootDir,
	})
	cfg := &container.Config{
		Image:      c.GetImage().GetImage(),
		Labels:     labels,
		WorkingDir: c.GetWorkingDir(),
		Tty:        c.GetTty(),
		OpenStdin:  c.GetStdin(),
		StdinOnce:  c.GetStdinOnce(),
	}
	if len(c.GetCommand()) > 0 {
		cfg.Entrypoint = c.GetCommand()
	}
	if len(c.GetArgs()) > 0 {
		cfg.Cmd = c.GetArgs()
	}
	for _, kv := range c.GetEnvs() {
		cfg.Env = append(cfg.Env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	if s := c.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		cfg.StopSignal = SignalName(s)
	}

	hc := &container.HostConfig{
		Runtime:       sb.RuntimeHandler,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
			"max-size": o.LogMaxSize, "max-file": o.LogMaxFile,
		}},
	}
	hc.CgroupParent = sb.CgroupParent
	if err := joinSandbox(hc, sb, sc.GetNamespaceOptions()); err != nil {
		return nil, err
	}
	if err := applyResources(hc, lc.GetResources(), o); err != nil {
		return nil, err
	}
	if err := applySecurity(cfg, hc, sc, o); err != nil {
		return nil, err
	}
	if err := applyMounts(hc, c.GetMounts(), o); err != nil {
		return nil, err
	}
	for _, d := range c.GetDevices() {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		target := d.GetContainerPath()
		if target == "" {
			target = d.GetHostPath()
		}
		hc.Devices = append(hc.Devices, container.DeviceMapping{PathOnHost: d.GetHostPath(), PathInContainer: target, CgroupPermissions: perms})
	}
	if err := applyCDI(hc, c.GetCDIDevices(), o); err != nil {
		return nil, err
	}
	if err := applyUserns(hc, sb, sc.GetNamespaceOptions(), c.GetMounts(), o); err != nil {
		return nil, err
	}
	return &CreateSpec{Name: ContainerName(sb.Metadata, c.GetMetadata()), Config: cfg, HostConfig: hc}, nil
}

// joinSandbox makes the container share the pod's namespaces: network and
// IPC always (the pod's or the host's), PID per the container's option.
func joinSandbox(hc *container.HostConfig, sb *store.Sandbox, ns *runtimeapi.NamespaceOption) error {
	pod := "container:" + sb.ID
	if sb.Namespaces.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		hc.NetworkMode = "host"
		hc.UTSMode = "host"
	} else {
		// Joining the pause container's network namespace also shares its
		// hostname and /etc/resolv.conf.
		hc.NetworkMode = container.NetworkMode(pod)
	}
	if sb.Namespaces.GetIpc() == runtimeapi.NamespaceMode_NODE {
		hc.IpcMode = "host"
	} else {
		hc.IpcMode = container.IpcMode(pod)
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_POD:
		if sb.Namespaces.GetPid() == runtimeapi.NamespaceMode_NODE {
			hc.PidMode = "host"
		} else {
			hc.PidMode = container.PidMode(pod)
		}
	case runtimeapi.NamespaceMode_NODE:
		hc.PidMode = "host"
	case runtimeapi.NamespaceMode_TARGET:
		hc.PidMode = container.PidMode("container:" + ns.GetTargetId())
	case runtimeapi.NamespaceMode_CONTAINER:
	default:
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.pid", "%v is not a PID namespace mode", ns.GetPid())
	}
	return nil
}

// applyCDI asks Docker's CDI driver for the container's CDI devices.
func applyCDI(hc *container.HostConfig, devices []*runtimeapi.CDIDevice, o ContainerOptions) error {
	if len(devices) == 0 {
		return nil
	}
	if o.CDI != nil {
		return fmt.Errorf("config.CDI_devices: %v: %w", o.CDI, errdefs.ErrFailedPrecondition)
	}
	var ids []string
	for i, d := range devices {
		// A device Docker does not know fails only when the container
		// starts; where Docker lists its devices, fail the create.
		if o.CDIDevices != nil && !slices.Contains(o.CDIDevices, d.GetName()) {
			return fmt.Errorf("config.CDI_devices[%d].name: %q is not a CDI device Docker knows (no CDI spec in its spec directories defines it): %w",
				i, d.GetName(), errdefs.ErrFailedPrecondition)
		}
		if !slices.Contains(ids, d.GetName()) {
			ids = append(ids, d.GetName())
		}
	}
	hc.DeviceRequests = append(hc.DeviceRequests, container.DeviceRequest{Driver: "cdi", DeviceIDs: ids})
	return nil
}

// PodUserns reports whether namespace options ask for a pod's own user
// namespace (userns_options present with mode POD; without them, or with
// NODE, it is the host's).
func PodUserns(ns *runtimeapi.NamespaceOption) bool {
	u := ns.GetUsernsOptions()
	return u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD
}

func usernsName(pod bool) string {
	if pod {
		return "POD"
	}
	return "NODE"
}

// NoUsernsReason says why a pod cannot have a user namespace on a daemon
// without user-namespace remapping.
const NoUsernsReason = "Docker has user namespaces only as a daemon-wide remapping (dockerd --userns-remap), which this Docker does not use"

func applyResources(hc *container.HostConfig, r *runtimeapi.LinuxContainerResources, o ContainerOptions) error {
	if r == nil {
		return nil
	}
	hc.Resources.CPUPeriod = r.GetCpuPeriod()
	hc.Resources.CPUQuota = r.GetCpuQuota()
	hc.Resources.CPUShares = r.GetCpuShares()
	hc.Resources.Memory = r.GetMemoryLimitInBytes()
	if s := r.GetMemorySwapLimitInBytes(); s != 0 {
		hc.Resources.MemorySwap = s
	}
	hc.Resources.CpusetCpus = r.GetCpusetCpus()
	hc.Resources.CpusetMems = r.GetCpusetMems()
	hc.OomScoreAdj = o.OOM.Apply(int(r.GetOomScoreAdj()))
	if len(r.GetUnified()) > 0 && o.CgroupVersion != "2" {
		return fmt.Errorf("config.linux.resources.unified: cgroup v2 settings on a cgroup v%s host: %w", o.CgroupVersion, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func applySecurity(cfg *container.Config, hc *container.HostConfig, sc *runtimeapi.LinuxContainerSecurityContext, o ContainerOptions) error {
	if sc == nil {
		// No security context still means something: no seccomp
		// profile, which is unconfined (seccompOpt).
		sc = &runtimeapi.LinuxContainerSecurityContext{}
	}
	switch {
	case sc.GetRunAsUsername() != "":
		cfg.User = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		cfg.User = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if cfg.User == "" {
			return errdefs.InvalidArgument("config.linux.security_context.run_as_group", "needs run_as_user or run_as_username")
		}
		cfg.User += ":" + strconv.FormatInt(g.GetValue(), 10)
	}
	for _, g := range sc.GetSupplementalGroups() {
		hc.GroupAdd = append(hc.GroupAdd, strconv.FormatInt(g, 10))
	}
	hc.ReadonlyRootfs = sc.GetReadonlyRootfs()
	if sc.GetNoNewPrivs() {
		hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges")
	}
	hc.SecurityOpt = append(hc.SecurityOpt, selinuxOpts(sc.GetSelinuxOptions())...)

	if sc.GetPrivileged() {
		return applyPrivileged(hc, o)
	}
	add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
	if slices.ContainsFunc(add, isAll) && o.HostCapabilities != nil {
		add = o.HostCapabilities
	}
	hc.CapAdd, hc.CapDrop = normalizeCaps(add), normalizeCaps(drop)
	if sc.MaskedPaths != nil {
		hc.MaskedPaths = nonNilSlice(sc.GetMaskedPaths())
	}
	if sc.ReadonlyPaths != nil {
		hc.ReadonlyPaths = nonNilSlice(sc.GetReadonlyPaths())
	}
	seccomp, err := seccompOpt(sc, o)
	if err != nil {
		return err
	}
	apparmor, err := apparmorOpt(sc, o)
	if err != nil {
		return err
	}
	hc.SecurityOpt = append(hc.SecurityOpt, seccomp...)
	hc.SecurityOpt = append(hc.SecurityOpt, apparmor...)
	return nil
}

// applyPrivileged gives a privileged container what Docker's privileged
// mode means — every capability, every device, no seccomp or AppArmor
// confinement, nothing masked or read-only in /proc and /sys — limited to
// the capabilities the host actually has: Docker's own privileged mode asks
// runc for all of them and fails on hosts whose bounding set lacks some.
func applyPrivileged(hc *container.HostConfig, o ContainerOptions) error {
	if o.HostCapabilities == nil {
		hc.Privileged = true
		return nil
	}
	hc.CapAdd = normalizeCaps(o.HostCapabilities)
	hc.CapDrop = nil
	for _, d := range o.HostDevices {
		hc.Devices = append(hc.Devices, container.DeviceMapping{PathOnHost: d, PathInContainer: d, CgroupPermissions: "rwm"})
	}
	hc.DeviceCgroupRules = []string{"a *:* rwm"}
	hc.MaskedPaths = []string{}
	hc.ReadonlyPaths = []string{}
	hc.SecurityOpt = append(hc.SecurityOpt, "seccomp=unconfined", "apparmor=unconfined", "label=disable")
	return nil
}

func seccompOpt(sc *runtimeapi.LinuxContainerSecurityContext, o ContainerOptions) ([]string, error) {
	const field = "config.linux.security_context.seccomp"
	kind, path := profileOf(sc.GetSeccomp(), sc.GetSeccompProfilePath())
	switch kind {
	case "runtime/default", "docker/default":
		return nil, nil
	case "", "unconfined":
		// NOTE: CRI defines an absent profile (and an empty
		// seccomp_profile_path) as unconfined, and containerd and CRI-O
		// run it so; Docker would apply its default profile. kubelet
		// always names a profile (Unconfined unless the pod or
		// --seccomp-default asks for RuntimeDefault), so only other
		// clients (crictl, critest) send none.
		return []string{"seccomp=unconfined"}, nil
	case "localhost":
		if !filepath.IsAbs(path) {
			return nil, errdefs.InvalidArgument(field+".localhost_ref", "%q must be an absolute path to a seccomp profile", path)
		}
		if o.ReadFile == nil {
			return nil, fmt.Errorf("%s: %w: cannot read profiles", field, errdefs.ErrInternal)
		}
		data, err := o.ReadFile(path)
		if err != nil {
			return nil, errdefs.InvalidArgument(field+".localhost_ref", "cannot read the seccomp profile %s: %v", path, err)
		}
		return []string{"seccomp=" + string(data)}, nil
	default:
		return nil, errdefs.InvalidArgument(field, "%q is not a seccomp profile", kind)
	}
}

func apparmorOpt(sc *runtimeapi.LinuxContainerSecurityContext, o ContainerOptions) ([]string, error) {
	const field = "config.linux.security_context.apparmor"
	kind, name := profileOf(sc.GetApparmor(), sc.GetApparmorProfile())
	switch kind {
	case "", "runtime/default", "docker/default":
		return nil, nil
	case "unconfined":
		return []string{"apparmor=unconfined"}, nil
	case "localhost":
		if !o.AppArmor {
			return nil, fmt.Errorf("%s: the AppArmor profile %q cannot be applied: this kernel has no AppArmor: %w", field, name, errdefs.ErrFailedPrecondition)
		}
		if name == "" {
			return nil, errdefs.InvalidArgument(field+".localhost_ref", "must name a profile")
		}
		return []string{"apparmor=" + name}, nil
	default:
		return nil, errdefs.InvalidArgument(field, "%q is not an AppArmor profile", kind)
	}
}

// profileOf reads a SecurityProfile, or the deprecated string form
// ("runtime/default", "unconfined", "localhost/<ref>"), into a kind and a
// localhost reference.
func profileOf(p *runtimeapi.SecurityProfile, legacy string) (kind, ref string) {
	if p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return "runtime/default", ""
		case runtimeapi.SecurityProfile_Unconfined:
			return "unconfined", ""
		case runtimeapi.SecurityProfile_Localhost:
			return "localhost", p.GetLocalhostRef()
		}
	}
	if rest, ok := strings.CutPrefix(legacy, "localhost/"); ok {
		return "localhost", rest
	}
	return legacy, ""
}

// applyMounts turns CRI mounts into legacy bind strings (API < 1.42, and for
// SELinux relabelling, which the Mount API cannot express) or Mount API
// mounts (which then create missing host paths themselves, as binds do),
// and image volumes into image mounts. selinux_relabel counts only where
// the daemon labels containers (o.SELinux): elsewhere Docker would not
// relabel anyway, and the request must not turn a mount into a legacy bind
// (which Docker 25 and newer make recursively read-only, and which cannot
// be recursive_read_only), just as containerd ignores it without SELinux.
func applyMounts(hc *container.HostConfig, mounts []*runtimeapi.Mount, o ContainerOptions) error {
	mountAPI := versions.GreaterThanOrEqualTo(o.APIVersion, APIMountCreateMountpoint)
	nonRecursiveRO := versions.GreaterThanOrEqualTo(o.APIVersion, APIReadOnlyNonRecursive)
	for i, m := range mounts {
		field := fmt.Sprintf("config.mounts[%d]", i)
		prop := propagation(m.GetPropagation())
		if m.GetImage().GetImage() != "" {
			im, err := imageMount(field, m, o)
			if err != nil {
				return err
			}
			hc.Mounts = append(hc.Mounts, im)
			continue
		}
		src := m.GetHostPath()
		if p, ok := o.HostPaths[src]; ok {
			src = p
		}
		if m.GetRecursiveReadOnly() && o.RecursiveReadOnly != nil {
			return fmt.Errorf("%s.recursive_read_only: %v: %w", field, o.RecursiveReadOnly, errdefs.ErrFailedPrecondition)
		}
		relabel := m.GetSelinuxRelabel() && o.SELinux
		if !mountAPI || relabel {
			// NOTE: a bind string is "host:container:options", split on
			// ':' by Docker. A colon in either path would shift the
			// fields (a path ending in ":z" would turn into a relabel
			// option), so it is refused here rather than left to
			// Docker's parser.
			if strings.Contains(src, ":") {
				return errdefs.InvalidArgument(field+".host_path", "%q (resolved: %q) contains ':', which a Docker bind cannot express", m.GetHostPath(), src)
			}
			if strings.Contains(m.GetContainerPath(), ":") {
				return errdefs.InvalidArgument(field+".container_path", "%q contains ':', which a Docker bind cannot express", m.GetContainerPath())
			}
			if m.GetRecursiveReadOnly() {
				// Without relabel this is below API 1.42, where
				// o.RecursiveReadOnly has refused it already.
				return fmt.Errorf("%s.recursive_read_only: cannot be combined with selinux_relabel: Docker relabels only legacy binds, which cannot be recursively read-only: %w", field, errdefs.ErrFailedPrecondition)
			}
			opts := []string{"rw"}
			if m.GetReadonly() {
				opts[0] = "ro"
			}
			opts = append(opts, string(prop))
			if relabel {
				opts = append(opts, "Z")
			}
			hc.Binds = append(hc.Binds, src+":"+m.GetContainerPath()+":"+strings.Join(opts, ","))
			continue
		}
		bo := &mount.BindOptions{Propagation: prop, CreateMountpoint: true}
		if m.GetReadonly() && nonRecursiveRO {
			if m.GetRecursiveReadOnly() {
				bo.ReadOnlyForceRecursive = true
			} else {
				bo.ReadOnlyNonRecursive = true
			}
		}
		hc.Mounts = append(hc.Mounts, mount.Mount{
			Type: mount.TypeBind, Source: src, Target: m.GetContainerPath(), ReadOnly: m.GetReadonly(), BindOptions: bo,
		})
	}
	return nil
}

// imageMount mounts an image volume (Mount.image, KEP 4639) with Docker's
// image mounts: read-only, private, optionally a directory of the image.
func imageMount(field string, m *runtimeapi.Mount, o ContainerOptions) (mount.Mount, error) {
	if o.ImageMounts != nil {
		return mount.Mount{}, fmt.Errorf("%s.image: %v: %w", field, o.ImageMounts, errdefs.ErrFailedPrecondition)
	}
	if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
		return mount.Mount{}, fmt.Errorf("%s.propagation: %v: Docker's image mounts are always private: %w", field, m.GetPropagation(), errdefs.ErrFailedPrecondition)
	}
	if m.GetSelinuxRelabel() && o.SELinux {
		return mount.Mount{}, fmt.Errorf("%s.selinux_relabel: Docker cannot relabel an image mount: %w", field, errdefs.ErrFailedPrecondition)
	}
	im := mount.Mount{Type: mount.TypeImage, Source: m.GetImage().GetImage(), Target: m.GetContainerPath(), ReadOnly: true}
	if p := m.GetImageSubPath(); p != "" {
		im.ImageOptions = &mount.ImageOptions{Subpath: filepath.Clean(p)}
	}
	return im, nil
}

func propagation(p runtimeapi.MountPropagation) mount.Propagation {
	switch p {
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		return mount.PropagationRSlave
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		return mount.PropagationRShared
	default:
		return mount.PropagationRPrivate
	}
}

func isAll(c string) bool { return strings.EqualFold(c, "ALL") || strings.EqualFold(c, "CAP_ALL") }

// normalizeCaps spells capabilities as Docker does: CAP_-prefixed, upper
// case, with ALL kept as is.
func normalizeCaps(caps []string) []string {
	var out []string
	for _, c := range caps {
		c = strings.ToUpper(strings.TrimSpace(c))
		switch {
		case c == "":
			continue
		case isAll(c):
			c = "ALL"
		case !strings.HasPrefix(c, "CAP_"):
			c = "CAP_" + c
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonZeroHugepages(h []*runtimeapi.HugepageLimit) []*runtimeapi.HugepageLimit {
	var out []*runtimeapi.HugepageLimit
	for _, l := range h {
		if l.GetLimit() > 0 {
			out = append(out, l)
		}
	}
	return out
}

// SignalName is the Docker spelling ("SIGTERM", "SIGRTMIN+3") of a CRI
// signal (SIGNAL_SIGTERM, SIGNAL_SIGRTMINPLUS3).
func SignalName(s runtimeapi.Signal) string {
	n := strings.TrimPrefix(s.String(), "SIGNAL_")
	n = strings.Replace(n, "PLUS", "+", 1)
	return strings.Replace(n, "MINUS", "-", 1)
}

// SignalFromName is the CRI signal Docker's spelling names.
func SignalFromName(name string) runtimeapi.Signal {
	if name == "" {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		if num, err := strconv.Atoi(n); err == nil {
			return signalByNumber(num)
		}
		n = "SIG" + n
	}
	n = strings.Replace(strings.Replace(n, "+", "PLUS", 1), "-", "MINUS", 1)
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+n]; ok {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}

// signalByNumber maps Linux signal numbers to CRI signals for images that
// give STOPSIGNAL as a number.
func signalByNumber(n int) runtimeapi.Signal {
	names := map[int]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 10: "SIGUSR1", 12: "SIGUSR2", 15: "SIGTERM", 28: "SIGWINCH"}
	if name, ok := names[n]; ok {
		return runtimeapi.Signal(runtimeapi.Signal_value["SIGNAL_"+name])
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}
