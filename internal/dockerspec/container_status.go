package dockerspec

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// ContainerFromInspect builds Berth's record of a container from Docker's
// inspect output. rootDir is this Berth's, to tell its own containers.
func ContainerFromInspect(in container.InspectResponse, rootDir string) (*store.Container, error) {
	if in.Config == nil || in.State == nil || in.HostConfig == nil {
		return nil, fmt.Errorf("container %s: incomplete inspect data", in.ID)
	}
	labels := in.Config.Labels
	c := &store.Container{
		ID:            in.ID,
		Name:          strings.TrimPrefix(in.Name, "/"),
		SandboxID:     labels[LabelSandboxID],
		CreatedAt:     parseTime(in.Created),
		ImageID:       ImageID(in.Image),
		LogPath:       labels[LabelLogPath],
		DockerLogPath: in.LogPath,
		StopSignal:    SignalFromName(in.Config.StopSignal),
		Tty:           in.Config.Tty,
		Stdin:         in.Config.OpenStdin,
		StdinOnce:     in.Config.StdinOnce,
	}
	var meta containerMeta
	if raw, ok := labels[LabelContainerMeta]; ok {
		if err := json.Unmarshal([]byte(raw), &meta); err != nil {
			return nil, fmt.Errorf("container %s: label %s: %w", in.ID, LabelContainerMeta, err)
		}
		c.Metadata, c.Labels, c.Annotations, c.Image = meta.Metadata, meta.Labels, meta.Annotations, meta.Image
		c.Mounts, c.Privileged = meta.Mounts, meta.Privileged
		if meta.LogPath != "" {
			c.LogPath = meta.LogPath
		}
		c.Owned = labels[LabelRoot] == rootDir
	} else {
		name, _, attempt, err := ParseName(in.Name)
		if err != nil {
			return nil, err
		}
		c.Metadata = &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt}
		c.Labels, c.Annotations = splitLabels(labels)
		c.Adopted = true
		c.Privileged = in.HostConfig.Privileged
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	if c.Image == nil {
		c.Image = &runtimeapi.ImageSpec{Image: in.Config.Image}
	}
	c.Resources = resourcesFromHostConfig(in.HostConfig, meta)
	c.RestoreCheckpoint = labels[LabelRestore]

	st := in.State
	c.Pid = st.Pid
	c.StartedAt = parseTime(st.StartedAt)
	c.FinishedAt = parseTime(st.FinishedAt)
	c.ExitCode = int32(st.ExitCode)
	c.State = containerState(st)
	if c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		switch {
		case st.OOMKilled:
			c.Reason = "OOMKilled"
		case st.Error != "":
			c.Reason = "StartError"
		case st.ExitCode == 0:
			c.Reason = "Completed"
		default:
			c.Reason = "Error"
		}
		c.Message = st.Error
		if c.FinishedAt == 0 {
			c.FinishedAt = max(c.StartedAt, c.CreatedAt)
		}
	}
	return c, nil
}

// resourcesFromHostConfig reports the limits Docker applied, plus those
// Berth applied itself (hugepages, cgroup v2 unified settings).
func resourcesFromHostConfig(hc *container.HostConfig, meta containerMeta) *runtimeapi.LinuxContainerResources {
	r := hc.Resources
	out := &runtimeapi.LinuxContainerResources{
		CpuPeriod:              r.CPUPeriod,
		CpuQuota:               r.CPUQuota,
		CpuShares:              r.CPUShares,
		MemoryLimitInBytes:     r.Memory,
		OomScoreAdj:            int64(hc.OomScoreAdj),
		CpusetCpus:             r.CpusetCpus,
		CpusetMems:             r.CpusetMems,
		HugepageLimits:         meta.Hugepages,
		Unified:                meta.Unified,
		MemorySwapLimitInBytes: r.MemorySwap,
	}
	return out
}

// containerState maps Docker's state to CRI's.
func containerState(st *container.State) runtimeapi.ContainerState {
	switch {
	case st.Running || st.Paused || st.Restarting:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case st.Status == container.StateCreated && (st.Error != "" || st.ExitCode != 0):
		// Docker leaves a container whose start failed (a missing
		// executable, say) "created", with the error: for kubelet it ran
		// and exited.
		return runtimeapi.ContainerState_CONTAINER_EXITED
	case st.Status == container.StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case st.Status == container.StateExited, st.Status == container.StateDead:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	default:
		if parseTime(st.FinishedAt) > 0 {
			return runtimeapi.ContainerState_CONTAINER_EXITED
		}
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN
	}
}

// ContainerToCRI is the ListContainers form of a record.
func ContainerToCRI(c *store.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     c.Metadata,
		Image:        c.Image,
		ImageRef:     c.ImageID,
		State:        c.State,
		CreatedAt:    c.CreatedAt,
		Labels:       c.Labels,
		Annotations:  c.Annotations,
		ImageId:      c.ImageID,
	}
}

// ContainerStatusToCRI is the ContainerStatus form of a record.
func ContainerStatusToCRI(c *store.Container) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Metadata,
		State:       c.State,
		CreatedAt:   c.CreatedAt,
		StartedAt:   c.StartedAt,
		FinishedAt:  c.FinishedAt,
		ExitCode:    c.ExitCode,
		Image:       statusImage(c.Image),
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Mounts:      c.Mounts,
		LogPath:     c.LogPath,
		StopSignal:  c.StopSignal,
	}
	if c.Resources != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: c.Resources}
	}
	if c.User != nil {
		st.User = &runtimeapi.ContainerUser{Linux: c.User}
	}
	return st
}

// statusImage is the image a ContainerStatus names. kubelet creates a
// container by image id (image: "sha256:…") and says what the pod asked for
// in user_specified_image; it shows the status's image as the pod's
// containerStatuses[].image, which users and the node conformance specs
// ("Containers Lifecycle … the image is updated") compare with the pod
// spec's image. So where the container was created by id, the status names
// the user's image, as CRI-O does (containerd names the image's first repo
// tag); a container created by name keeps that name.
func statusImage(spec *runtimeapi.ImageSpec) *runtimeapi.ImageSpec {
	user := spec.GetUserSpecifiedImage()
	if user == "" {
		return spec
	}
	ref, err := ParseImageRef(spec.GetImage())
	if err != nil || ref.ID == "" {
		return spec
	}
	return &runtimeapi.ImageSpec{
		Image:              user,
		Annotations:        spec.GetAnnotations(),
		UserSpecifiedImage: user,
		RuntimeHandler:     spec.GetRuntimeHandler(),
	}
}
