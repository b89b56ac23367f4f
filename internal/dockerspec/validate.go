package dockerspec

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ValidatePodSandboxConfig checks what RunPodSandbox needs from its config,
// naming the first offending field.
func ValidatePodSandboxConfig(c *runtimeapi.PodSandboxConfig) error {
	if c == nil {
		return errdefs.InvalidArgument("config", "is required")
	}
	m := c.GetMetadata()
	if m == nil {
		return errdefs.InvalidArgument("config.metadata", "is required")
	}
	for _, f := range []struct{ field, value string }{
		{"config.metadata.name", m.GetName()},
		{"config.metadata.namespace", m.GetNamespace()},
		{"config.metadata.uid", m.GetUid()},
	} {
		if err := validateNamePart(f.field, f.value); err != nil {
			return err
		}
	}
	if d := c.GetLogDirectory(); d != "" && !filepath.IsAbs(d) {
		return errdefs.InvalidArgument("config.log_directory", "%q must be an absolute path", d)
	}
	for i, s := range c.GetDnsConfig().GetServers() {
		if _, err := netip.ParseAddr(s); err != nil {
			return errdefs.InvalidArgument(fmt.Sprintf("config.dns_config.servers[%d]", i), "%q is not an IP address", s)
		}
	}
	for i, pm := range c.GetPortMappings() {
		field := fmt.Sprintf("config.port_mappings[%d]", i)
		if pm.GetContainerPort() <= 0 || pm.GetContainerPort() > 65535 {
			return errdefs.InvalidArgument(field+".container_port", "%d is not a port", pm.GetContainerPort())
		}
		if pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 {
			return errdefs.InvalidArgument(field+".host_port", "%d is not a port", pm.GetHostPort())
		}
		if ip := pm.GetHostIp(); ip != "" {
			if _, err := netip.ParseAddr(ip); err != nil {
				return errdefs.InvalidArgument(field+".host_ip", "%q is not an IP address", ip)
			}
		}
		if _, ok := runtimeapi.Protocol_name[int32(pm.GetProtocol())]; !ok {
			return errdefs.InvalidArgument(field+".protocol", "%d is not a protocol", pm.GetProtocol())
		}
	}
	ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch ns.GetNetwork() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE:
	default:
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.network",
			"%v is not supported for a pod: use POD or NODE", ns.GetNetwork())
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_NODE:
	default:
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.pid",
			"%v is not supported for a pod: use POD, CONTAINER or NODE", ns.GetPid())
	}
	switch ns.GetIpc() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE:
	default:
		return errdefs.InvalidArgument("config.linux.security_context.namespace_options.ipc",
			"%v is not supported for a pod: use POD or NODE", ns.GetIpc())
	}
	if u := ns.GetUsernsOptions(); u != nil {
		if err := validatePodUserns(u); err != nil {
			return err
		}
	}
	for k := range c.GetLinux().GetSysctls() {
		if strings.TrimSpace(k) == "" {
			return errdefs.InvalidArgument("config.linux.sysctls", "a sysctl has an empty name")
		}
	}
	return nil
}

func validateNamePart(field, v string) error {
	if v == "" {
		return errdefs.InvalidArgument(field, "must not be empty")
	}
	if len(v) > 253 {
		return errdefs.InvalidArgument(field, "is longer than 253 characters")
	}
	if !namePart.MatchString(v) {
		return errdefs.InvalidArgument(field, "%q may only contain letters, digits, '.' and '-', starting with a letter or digit", v)
	}
	return nil
}
