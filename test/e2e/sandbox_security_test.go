package e2e

import (
	"context"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSecurityContextReachesThePauseContainer checks what the pod-level
// security context does to the pause container (kubelet passes each
// container its own): user, groups, read-only root filesystem, SELinux
// labels, seccomp; a privileged pod's pause container stays unprivileged;
// the Windows sections are ignored on Linux.
func TestPodSecurityContextReachesThePauseContainer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := podConfig("podsec")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		RunAsUser:                &runtimeapi.Int64Value{Value: 65534},
		RunAsGroup:               &runtimeapi.Int64Value{Value: 65534},
		SupplementalGroups:       []int64{7777},
		SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
		ReadonlyRootfs:           true,
		Privileged:               true,
		SelinuxOptions:           &runtimeapi.SELinuxOption{Level: "s0:c1,c2"},
		Seccomp:                  &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
	}
	cfg.Windows = &runtimeapi.WindowsPodSandboxConfig{SecurityContext: &runtimeapi.WindowsSandboxSecurityContext{RunAsUsername: "ContainerUser", HostProcess: true}}
	id := runPod(t, berth, cfg)
	if st := podStatus(t, berth, id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state %v", st.State)
	}
	out, err := docker(t, "inspect", "-f", "{{.Config.User}}|{{.HostConfig.GroupAdd}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.Privileged}}|{{.HostConfig.SecurityOpt}}", id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "65534:65534|[7777]|true|false|[label=level:s0:c1,c2 seccomp=unconfined]"; out != want {
		t.Errorf("pause container = %s, want %s", out, want)
	}
	if status, _ := docker(t, "exec", id, "true"); strings.Contains(status, "is not running") {
		t.Errorf("the pause container does not run: %s", status)
	}

	// A container with a Windows section is created as if it had none.
	c := containerConfig("win", "sleep 3600")
	c.Windows = &runtimeapi.WindowsContainerConfig{Resources: &runtimeapi.WindowsContainerResources{CpuCount: 2, MemoryLimitInBytes: 1 << 30}}
	cid, err := berth.Runtime.CreateContainer(ctx, id, c, cfg)
	if err != nil {
		t.Fatalf("CreateContainer with a Windows section: %v", err)
	}
	t.Cleanup(func() { _ = berth.Runtime.RemoveContainer(ctx, cid) })
	if mem, _ := docker(t, "inspect", "-f", "{{.HostConfig.Memory}}", cid); mem != "0" {
		t.Errorf("the Windows memory limit reached Docker: %s", mem)
	}
}
