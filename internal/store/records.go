package store

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sandbox is what Berth knows of one pod sandbox: its pause container as
// Docker reports it, and its network as the checkpoint records it.
type Sandbox struct {
	ID   string
	Name string // Docker container name, without the leading "/"

	Metadata       *runtimeapi.PodSandboxMetadata
	Labels         map[string]string
	Annotations    map[string]string
	RuntimeHandler string
	CreatedAt      int64 // Unix nanoseconds
	LogDirectory   string
	Hostname       string
	Image          string
	CgroupParent   string
	Namespaces     *runtimeapi.NamespaceOption

	// Running is true while the pause container runs; Pid is its process.
	Running bool
	Pid     int
	// ContainerGone is true when the pause container no longer exists in
	// Docker and only the checkpoint is left.
	ContainerGone bool

	// NetworkReady is true while the pod network is set up (always for
	// host-network pods and Docker-bridge mode).
	NetworkReady bool
	// IPs are the pod's IPs, primary first.
	IPs []string
	// NetNS is the network namespace path CNI was given.
	NetNS string

	// CheckpointCorrupt is true when the sandbox's checkpoint was found
	// corrupt (and quarantined): its network is torn down with the current
	// configuration instead.
	CheckpointCorrupt bool

	// Adopted is true for sandboxes Berth did not create (cri-dockerd's,
	// dockershim's), known from their names and labels.
	Adopted bool
	// Owned is true when this Berth instance (same --root-dir) created it.
	Owned bool
}

// State is the CRI state: READY while the pause container runs and the
// network is set up.
func (s *Sandbox) State() runtimeapi.PodSandboxState {
	if s.Running && s.NetworkReady && !s.ContainerGone {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// Container is what Berth knows of one container of a pod.
type Container struct {
	ID        string
	Name      string
	SandboxID string

	Metadata    *runtimeapi.ContainerMetadata
	Labels      map[string]string
	Annotations map[string]string
	// Image is the image as kubelet gave it (with user_specified_image).
	Image *runtimeapi.ImageSpec
	// ImageID is the id of the image the container runs.
	ImageID string
	// LogPath is the CRI log file kubelet asked for.
	LogPath string
	// DockerLogPath is Docker's json-file copy of the output.
	DockerLogPath string
	CreatedAt     int64

	State      runtimeapi.ContainerState
	StartedAt  int64
	FinishedAt int64
	ExitCode   int32
	Reason     string
	Message    string
	Pid        int

	Mounts     []*runtimeapi.Mount
	Resources  *runtimeapi.LinuxContainerResources
	StopSignal runtimeapi.Signal
	// User is the identity the process runs with, as last observed.
	User *runtimeapi.LinuxContainerUser

	Tty        bool
	Stdin      bool
	StdinOnce  bool
	Privileged bool

	// RestoreCheckpoint names the Docker checkpoint (CRIU images of the
	// processes) a container made by RestorePod starts from; "" for every
	// other container.
	RestoreCheckpoint string

	// Adopted is true for containers Berth did not create.
	Adopted bool
	// Owned is true when this Berth instance created it.
	Owned bool
}
