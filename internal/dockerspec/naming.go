package dockerspec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Docker container names follow the scheme dockershim and cri-dockerd use,
// so their containers are adopted after a switch and `docker ps` stays
// readable:
//
//	k8s_POD_<pod>_<namespace>_<uid>_<attempt>          pod sandbox
//	k8s_<container>_<pod>_<namespace>_<uid>_<attempt>  container
//
// The name also makes creation idempotent: Docker refuses a second
// container with the same name.
const (
	kubePrefix    = "k8s"
	nameDelimiter = "_"
)

// SandboxName returns the pause container's Docker name.
func SandboxName(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{kubePrefix, PodInfraContainerName, m.GetName(), m.GetNamespace(), m.GetUid(),
		strconv.FormatUint(uint64(m.GetAttempt()), 10)}, nameDelimiter)
}

// ContainerName returns a container's Docker name.
func ContainerName(pod *runtimeapi.PodSandboxMetadata, c *runtimeapi.ContainerMetadata) string {
	return strings.Join([]string{kubePrefix, c.GetName(), pod.GetName(), pod.GetNamespace(), pod.GetUid(),
		strconv.FormatUint(uint64(c.GetAttempt()), 10)}, nameDelimiter)
}

// ParseName splits a Docker name made by the scheme above (with or without
// the leading "/", and tolerating the random suffix cri-dockerd appends
// after a name conflict) into the container name ("POD" for a sandbox) and
// the pod's metadata.
func ParseName(name string) (container string, pod *runtimeapi.PodSandboxMetadata, attempt uint32, err error) {
	parts := strings.Split(strings.TrimPrefix(name, "/"), nameDelimiter)
	if len(parts) != 6 && len(parts) != 7 {
		return "", nil, 0, fmt.Errorf("%q is not a Kubernetes container name", name)
	}
	if parts[0] != kubePrefix {
		return "", nil, 0, fmt.Errorf("%q is not a Kubernetes container name", name)
	}
	n, err := strconv.ParseUint(parts[5], 10, 32)
	if err != nil {
		return "", nil, 0, fmt.Errorf("%q: attempt %q is not a number", name, parts[5])
	}
	return parts[1], &runtimeapi.PodSandboxMetadata{Name: parts[2], Namespace: parts[3], Uid: parts[4], Attempt: uint32(n)}, uint32(n), nil
}

// namePart is what may appear in one part of a Docker name: Docker allows
// [a-zA-Z0-9_.-]; the underscore is the delimiter, so it is refused.
var namePart = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.-]*$`)

// ShortID is the 12-character form of a Docker id that `docker ps` shows,
// for logs and error messages; a shorter id is returned whole.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
