package dockerspec

import (
	"fmt"
	"path/filepath"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/store"
)

// validatePodUserns checks a pod's userns_options as the CRI defines
// them: mode POD or NODE, and for POD exactly one uid and one gid mapping
// (kubelet's form), each mapping ID 0 and not empty.
func validatePodUserns(u *runtimeapi.UserNamespace) error {
	const field = "config.linux.security_context.namespace_options.userns_options"
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		for _, c := range []struct {
			name string
			ms   []*runtimeapi.IDMapping
		}{{"uids", u.GetUids()}, {"gids", u.GetGids()}} {
			if len(c.ms) != 1 {
				return errdefs.InvalidArgument(field+"."+c.name, "a pod's user namespace needs exactly one mapping, not %d", len(c.ms))
			}
			m := c.ms[0]
			if m.GetLength() == 0 {
				return errdefs.InvalidArgument(field+"."+c.name+"[0].length", "must not be 0")
			}
			if m.GetContainerId() != 0 {
				return errdefs.InvalidArgument(field+"."+c.name+"[0].container_id", "is %d: the mapping must map ID 0 (the pod's root)", m.GetContainerId())
			}
			if uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32 {
				return errdefs.InvalidArgument(field+"."+c.name+"[0]", "host IDs %d+%d overflow 32 bits", m.GetHostId(), m.GetLength())
			}
		}
	default:
		return errdefs.InvalidArgument(field+".mode", "%v is not supported for a pod: use POD or NODE", u.GetMode())
	}
	return nil
}

// useUsernsRuntime runs the container through Berth's runtime wrapper,
// with the annotations that tell it the pod's mappings, the container's
// role and the bind mounts to id-map (package idmap). handler is the
// pod's runtime handler: the wrapper runs runc, so only the default
// handler (or the wrapper's own name) can have a user namespace.
func useUsernsRuntime(hc *container.HostConfig, handler string, u *runtimeapi.UserNamespace, role string, idmapped []string) error {
	if handler != "" && handler != idmap.RuntimeName {
		return fmt.Errorf("runtime_handler: %q: a pod with a user namespace of its own runs through Berth's runtime %s, which runs runc; use the default handler: %w",
			handler, idmap.RuntimeName, errdefs.ErrFailedPrecondition)
	}
	hc.Runtime = idmap.RuntimeName
	if hc.Annotations == nil {
		hc.Annotations = map[string]string{}
	}
	hc.Annotations[idmap.AnnotationUIDs] = idmap.Format(mappings(u.GetUids()))
	hc.Annotations[idmap.AnnotationGIDs] = idmap.Format(mappings(u.GetGids()))
	hc.Annotations[idmap.AnnotationRole] = role
	if len(idmapped) > 0 {
		hc.Annotations[idmap.AnnotationIDMappedMounts] = idmap.FormatMounts(idmapped)
	}
	return nil
}

func mappings(ms []*runtimeapi.IDMapping) []idmap.Mapping {
	out := make([]idmap.Mapping, len(ms))
	for i, m := range ms {
		out[i] = idmap.Mapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Length: m.GetLength()}
	}
	return out
}

// applyUserns puts the container in its pod's user namespace: through
// Berth's runtime wrapper, which joins the pause container's; or, on a
// daemon that remaps every container (dockerd --userns-remap), Docker's
// own, which joining the pause container's network namespace gives.
// Containers of other pods run in the host's. Mounts with ID mappings
// (kubelet asks for them on every volume of a pod with a user namespace)
// are id-mapped by the wrapper, with the pod's mappings only.
func applyUserns(hc *container.HostConfig, sb *store.Sandbox, ns *runtimeapi.NamespaceOption, mounts []*runtimeapi.Mount, o ContainerOptions) error {
	const field = "config.linux.security_context.namespace_options.userns_options.mode"
	pod, own := PodUserns(sb.Namespaces), PodUserns(ns)
	if own != pod {
		return errdefs.InvalidArgument(field, "%s differs from the pod's %s: a container runs in its pod's user namespace", usernsName(own), usernsName(pod))
	}
	wrapper := own && !o.UsernsRemap
	var idmapped []string
	for i, m := range mounts {
		if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
			continue
		}
		mf := fmt.Sprintf("config.mounts[%d]", i)
		switch {
		case !wrapper:
			return fmt.Errorf("%s.uidMappings: id-mapped mounts need a pod with a user namespace of its own, run by Berth's runtime wrapper: %w", mf, errdefs.ErrFailedPrecondition)
		case m.GetImage().GetImage() != "":
			return fmt.Errorf("%s.uidMappings: an image volume cannot be id-mapped (Docker mounts it itself): %w", mf, errdefs.ErrFailedPrecondition)
		}
		u := sb.Namespaces.GetUsernsOptions()
		if !sameMappings(m.GetUidMappings(), u.GetUids()) || !sameMappings(m.GetGidMappings(), u.GetGids()) {
			return fmt.Errorf("%s.uidMappings: a mount can be id-mapped only with its pod's mappings (uids %s, gids %s): %w",
				mf, idmap.Format(mappings(u.GetUids())), idmap.Format(mappings(u.GetGids())), errdefs.ErrFailedPrecondition)
		}
		idmapped = append(idmapped, filepath.Clean(m.GetContainerPath()))
	}
	switch {
	case wrapper && o.Userns != nil:
		return fmt.Errorf("%s: POD: %s, and Berth's runtime wrapper cannot run it: %v: %w", field, NoUsernsReason, o.Userns, errdefs.ErrFailedPrecondition)
	case wrapper:
		return useUsernsRuntime(hc, sb.RuntimeHandler, sb.Namespaces.GetUsernsOptions(), idmap.RoleContainer, idmapped)
	case own:
		// Joining the pause container's network namespace puts the
		// container in the pause container's user namespace too: Docker
		// does that.
	case o.UsernsRemap:
		hc.UsernsMode = "host"
	}
	return nil
}

func sameMappings(a, b []*runtimeapi.IDMapping) bool {
	return idmap.Equal(mappings(a), mappings(b))
}
