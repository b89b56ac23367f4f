package dockerspec

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// containerMeta is the JSON in LabelContainerMeta.
type containerMeta struct {
	Metadata    *runtimeapi.ContainerMetadata `json:"metadata"`
	Labels      map[string]string             `json:"labels,omitempty"`
	Annotations map[string]string             `json:"annotations,omitempty"`
	Image       *runtimeapi.ImageSpec         `json:"image,omitempty"`
	LogPath     string                        `json:"logPath,omitempty"`
}

// ContainerFromInspect builds Berth's record of a container from Docker's
// inspect output.
func ContainerFromInspect(in container.InspectResponse) (*store.Container, error) {
	if in.Config == nil || in.State == nil {
		return nil, fmt.Errorf("container %s: incomplete inspect data", in.ID)
	}
	labels := in.Config.Labels
	c := &store.Container{
		ID:        in.ID,
		Name:      strings.TrimPrefix(in.Name, "/"),
		SandboxID: labels[LabelSandboxID],
		CreatedAt: parseTime(in.Created),
		ImageID:   in.Image,
		LogPath:   labels[LabelLogPath],
		Pid:       in.State.Pid,
	}
	if raw, ok := labels[LabelContainerMeta]; ok {
		var m containerMeta
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return nil, fmt.Errorf("container %s: label %s: %w", in.ID, LabelContainerMeta, err)
		}
		c.Metadata, c.Labels, c.Annotations, c.Image = m.Metadata, m.Labels, m.Annotations, m.Image
		if m.LogPath != "" {
			c.LogPath = m.LogPath
		}
	} else {
		name, _, attempt, err := ParseName(in.Name)
		if err != nil {
			return nil, err
		}
		c.Metadata = &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt}
		c.Labels, c.Annotations = splitLabels(labels)
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
	c.ImageRef = in.Image
	c.StartedAt = parseTime(in.State.StartedAt)
	c.FinishedAt = parseTime(in.State.FinishedAt)
	c.ExitCode = int32(in.State.ExitCode)
	c.State = containerState(in.State)
	if c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		switch {
		case in.State.OOMKilled:
			c.Reason = "OOMKilled"
		case in.State.ExitCode == 0:
			c.Reason = "Completed"
		default:
			c.Reason = "Error"
		}
		c.Message = in.State.Error
	}
	return c, nil
}

// containerState maps Docker's state to CRI's.
func containerState(st *container.State) runtimeapi.ContainerState {
	switch {
	case st.Running || st.Paused || st.Restarting:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
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
