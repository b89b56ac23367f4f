package checkpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// optionProcessState is the one option CheckpointPod and RestorePod take
// (runtime-specific, for direct CRI callers; kubelet sends none):
// "omit" checkpoints, or restores, the containers' filesystems without
// their processes, which then start afresh; "include", the default, needs
// Docker's checkpoint API.
const optionProcessState = "process-state"

// processStateOption reads the options of CheckpointPod or RestorePod:
// whether process state is wanted. Unknown keys and values are refused.
func processStateOption(opts map[string]string) (bool, error) {
	for k, v := range opts {
		if k != optionProcessState {
			return false, errdefs.InvalidArgument("options", "%q is not an option Berth knows (it has only %q)", k, optionProcessState)
		}
		if v != "include" && v != "omit" {
			return false, errdefs.InvalidArgument("options", "%s=%q: use include or omit", k, v)
		}
	}
	return opts[optionProcessState] != "omit", nil
}

// CheckpointPod writes a checkpoint of a running pod's selected containers
// into output_path: pod.dump and pod.options, and one container archive
// per container under containers/ (CheckpointContainer's layout). Every
// container is paused before the first is captured and resumed before the
// call returns, so the checkpoint is one pod-wide moment and the pod is
// never left frozen. Process state needs Docker's checkpoint API; the
// option process-state=omit checkpoints the files only.
func (s *Service) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgument("pod_sandbox_id", "must not be empty")
	}
	out := req.GetOutputPath()
	if !filepath.IsAbs(out) {
		return nil, errdefs.InvalidArgument("output_path", "%q must be an absolute path", out)
	}
	if entries, err := os.ReadDir(out); err != nil {
		return nil, errdefs.InvalidArgument("output_path", "must be an existing directory: %v", err)
	} else if len(entries) > 0 {
		return nil, errdefs.InvalidArgument("output_path", "%s is not empty", out)
	}
	processState, err := processStateOption(req.GetOptions())
	if err != nil {
		return nil, err
	}
	if len(req.GetContainerIds()) == 0 {
		return nil, errdefs.InvalidArgument("container_ids", "must name the containers to checkpoint")
	}
	sb, err := s.store.ResolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("pod_sandbox_id: %w", err)
	}
	containers, err := s.podCheckpointContainers(sb, req.GetContainerIds())
	if err != nil {
		return nil, err
	}
	h, err := s.runtime.DaemonReady(ctx)
	if err != nil {
		return nil, err
	}
	if processState {
		if err := h.Daemon.Checkpoints(); err != nil {
			return nil, fmt.Errorf("pod_sandbox_id: cannot checkpoint the processes of pod %s: %v (the option %s=omit checkpoints the files only): %w",
				dockerspec.ShortID(sb.ID), err, optionProcessState, errdefs.ErrFailedPrecondition)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*s.requestTimeout)
		defer cancel()
	}

	unlock := s.runtime.Lock(sb.ID)
	defer unlock()
	ids := make([]string, 0, len(containers))
	for _, c := range containers {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	for _, id := range ids {
		defer s.runtime.Lock(id)()
	}
	if sb, _ = s.store.Sandbox(sb.ID); sb == nil || sb.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("pod_sandbox_id: pod sandbox %s is not ready: %w", dockerspec.ShortID(req.GetPodSandboxId()), errdefs.ErrFailedPrecondition)
	}
	for _, c := range containers {
		if cur, ok := s.store.Container(c.ID); !ok || cur.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			return nil, fmt.Errorf("container_ids: container %s is not running: %w", dockerspec.ShortID(c.ID), errdefs.ErrFailedPrecondition)
		}
	}

	err = s.writePodCheckpoint(ctx, sb, containers, out, processState)
	if err != nil {
		// The caller's directory stays, empty, as it was.
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(out, e.Name()))
		}
		return nil, fmt.Errorf("checkpointing pod %s: %w", dockerspec.ShortID(sb.ID), err)
	}
	logging.FromContext(ctx).Info("pod checkpointed", "sandbox", dockerspec.ShortID(sb.ID), "containers", len(containers), "processState", processState, "dir", out)
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// podCheckpointContainers resolves container_ids: distinct containers of
// the pod with distinct names.
func (s *Service) podCheckpointContainers(sb *store.Sandbox, ids []string) ([]*store.Container, error) {
	var out []*store.Container
	names := map[string]bool{}
	for i, id := range ids {
		field := fmt.Sprintf("container_ids[%d]", i)
		c, err := s.store.ResolveContainer(id)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if err != nil {
			return nil, err
		}
		if c.SandboxID != sb.ID {
			return nil, errdefs.InvalidArgument(field, "container %s is not in pod %s", dockerspec.ShortID(c.ID), dockerspec.ShortID(sb.ID))
		}
		if slices.ContainsFunc(out, func(o *store.Container) bool { return o.ID == c.ID }) {
			return nil, errdefs.InvalidArgument(field, "container %s is named twice", dockerspec.ShortID(c.ID))
		}
		if names[c.Metadata.GetName()] {
			return nil, errdefs.InvalidArgument(field, "two containers named %q", c.Metadata.GetName())
		}
		names[c.Metadata.GetName()] = true
		out = append(out, c)
	}
	return out, nil
}

// writePodCheckpoint pauses the containers, writes their archives and the
// pod's description into dir, and resumes them.
func (s *Service) writePodCheckpoint(ctx context.Context, sb *store.Sandbox, containers []*store.Container, dir string, processState bool) error {
	ids := make([]string, 0, len(containers))
	for _, c := range containers {
		ids = append(ids, c.ID)
	}
	resume, err := s.pauseAll(ctx, ids)
	defer resume()
	if err != nil {
		return err
	}
	cdir := filepath.Join(dir, archive.ContainersDirectory)
	if err := os.Mkdir(cdir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	opts := archive.PodOptions{Version: 1, ProcessState: processState, CheckpointedAt: time.Now().UTC(), RuntimeHandler: sb.RuntimeHandler}
	for _, c := range containers {
		name := c.Metadata.GetName()
		err := writeFileAtomically(filepath.Join(cdir, name+".tar"), func(w io.Writer) error {
			return s.writeContainerArchive(ctx, c, sb, w, processState)
		})
		if err != nil {
			return fmt.Errorf("container %s (%s): %w", name, dockerspec.ShortID(c.ID), err)
		}
		opts.Containers = append(opts.Containers, name)
	}
	pod := &runtimeapi.PodSandboxConfig{
		Metadata:     sb.Metadata,
		Hostname:     sb.Hostname,
		LogDirectory: sb.LogDirectory,
		Labels:       sb.Labels,
		Annotations:  sb.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    sb.CgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: sb.Namespaces},
		},
	}
	for _, f := range []struct {
		name string
		v    any
	}{{archive.PodDumpFile, pod}, {archive.PodOptionsFile, opts}} {
		err := writeFileAtomically(filepath.Join(dir, f.name), func(w io.Writer) error { return writeJSON(w, f.v) })
		if err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}
