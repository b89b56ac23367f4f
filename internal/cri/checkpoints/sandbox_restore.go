package checkpoints

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/cleanup"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/hostfs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// RestorePod makes a pod and its containers from a checkpoint CheckpointPod
// wrote: it runs the sandbox from the request's configuration, creates
// each container from its configuration (which must describe the
// checkpointed process: image, command, working directory, environment and
// user are checked), and puts back the files the container had added,
// changed and deleted. The containers are left CREATED; StartContainer
// then restores their processes with Docker's checkpoint API (CRIU), or,
// for a checkpoint of files only, starts them afresh (the option
// process-state=omit must say so). On error nothing the call made is left.
func (s *Service) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	dir := req.GetCheckpointPath()
	if !filepath.IsAbs(dir) {
		return nil, errdefs.InvalidArgument("checkpoint_path", "%q must be an absolute path", dir)
	}
	if err := dockerspec.ValidatePodSandboxConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	configs := req.GetContainerConfigs()
	if len(configs) == 0 {
		return nil, errdefs.InvalidArgument("container_configs", "must not be empty")
	}
	var names []string
	for i, c := range configs {
		if err := dockerspec.ValidateContainerConfig(c); err != nil {
			return nil, fmt.Errorf("container_configs[%d]: %w", i, err)
		}
		if slices.Contains(names, c.GetMetadata().GetName()) {
			return nil, errdefs.InvalidArgument(fmt.Sprintf("container_configs[%d].metadata.name", i), "%q is named twice", c.GetMetadata().GetName())
		}
		names = append(names, c.GetMetadata().GetName())
	}
	processState, err := processStateOption(req.GetOptions())
	if err != nil {
		return nil, err
	}
	var po archive.PodOptions
	if err := archive.ReadJSON(dir, archive.PodOptionsFile, &po); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.InvalidArgument("checkpoint_path", "%s is not a pod checkpoint Berth wrote (it has no %s)", dir, archive.PodOptionsFile)
		}
		return nil, errdefs.InvalidArgument("checkpoint_path", "%v", err)
	}
	if po.Version != 1 {
		return nil, fmt.Errorf("checkpoint_path: pod checkpoint version %d is not one this Berth reads (1): %w", po.Version, errdefs.ErrFailedPrecondition)
	}
	if a, b := slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(po.Containers)); !slices.Equal(a, b) {
		return nil, errdefs.InvalidArgument("container_configs", "the containers %q are not the checkpoint's %q", a, b)
	}
	if processState && !po.ProcessState {
		return nil, fmt.Errorf("checkpoint_path: the checkpoint has the containers' files but not their processes (it was taken with %s=omit); "+
			"the option %s=omit restores it, starting the processes afresh: %w", optionProcessState, optionProcessState, errdefs.ErrFailedPrecondition)
	}
	h, err := s.runtime.DaemonReady(ctx)
	if err != nil {
		return nil, err
	}
	if processState {
		if err := h.Daemon.Checkpoints(); err != nil {
			return nil, fmt.Errorf("checkpoint_path: cannot restore the processes: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
		if req.GetRuntimeHandler() != po.RuntimeHandler {
			return nil, fmt.Errorf("runtime_handler: %q cannot restore processes checkpointed with %q: %w", req.GetRuntimeHandler(), po.RuntimeHandler, errdefs.ErrFailedPrecondition)
		}
	}
	if existing, ok := s.store.SandboxByName(dockerspec.SandboxName(req.GetConfig().GetMetadata())); ok {
		return nil, fmt.Errorf("config.metadata: pod %s exists already as %s: %w", dockerspec.SandboxName(req.GetConfig().GetMetadata()), dockerspec.ShortID(existing.ID), errdefs.ErrAlreadyExists)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*s.requestTimeout)
		defer cancel()
	}

	log := logging.FromContext(ctx)
	var undo cleanup.Stack
	defer undo.Run(log)
	run, err := s.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: req.GetConfig(), RuntimeHandler: req.GetRuntimeHandler()})
	if err != nil {
		return nil, err
	}
	sandboxID := run.GetPodSandboxId()
	undo.Push("remove the restored pod sandbox "+dockerspec.ShortID(sandboxID), func(ctx context.Context) error { return s.runtime.RemoveSandbox(ctx, sandboxID) })
	sb, ok := s.store.Sandbox(sandboxID)
	if !ok {
		return nil, fmt.Errorf("%w: the restored pod sandbox %s vanished", errdefs.ErrInternal, dockerspec.ShortID(sandboxID))
	}
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: sandboxID}
	for i, cfg := range configs {
		id, err := s.restoreContainer(ctx, fmt.Sprintf("container_configs[%d]", i), sb, cfg, dir, processState, h.Daemon, &undo)
		if err != nil {
			return nil, err
		}
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: cfg.GetMetadata().GetName(), ContainerId: id})
	}
	undo.Release()
	log.Info("pod restored", "sandbox", dockerspec.ShortID(sandboxID), "containers", len(configs), "processState", processState, "from", dir)
	return resp, nil
}

// restoreContainer creates one container of a restored pod and gives it
// its checkpointed files; with processState its Docker labels name the
// CRIU images StartContainer restores.
func (s *Service) restoreContainer(ctx context.Context, field string, sb *store.Sandbox, cfg *runtimeapi.ContainerConfig, dir string, processState bool, d docker.DaemonInfo, undo *cleanup.Stack) (string, error) {
	name := cfg.GetMetadata().GetName()
	stage, err := s.workDir("restore-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	f, err := os.Open(filepath.Join(dir, archive.ContainersDirectory, name+".tar"))
	if err != nil {
		return "", fmt.Errorf("checkpoint_path: the checkpoint of container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	err = archive.Extract(f, stage)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("checkpoint_path: the checkpoint of container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	var spec archive.Spec
	var conf archive.ContainerConfig
	var deleted []string
	if err := archive.ReadJSON(stage, archive.SpecDumpFile, &spec); err != nil {
		return "", fmt.Errorf("checkpoint_path: container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if err := archive.ReadJSON(stage, archive.ConfigDumpFile, &conf); err != nil {
		return "", fmt.Errorf("checkpoint_path: container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if err := archive.ReadJSON(stage, archive.DeletedFilesFile, &deleted); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint_path: container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if deleted, err = archive.CleanDeleted(deleted); err != nil {
		return "", fmt.Errorf("checkpoint_path: container %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	imageID, err := s.docker.ImageID(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("%s.image.image: %w", field, err)
	}
	if conf.RootfsImageRef != "" && imageID != conf.RootfsImageRef {
		return "", fmt.Errorf("%s.image.image: %s is image %s, but the checkpointed container ran image %s: %w",
			field, cfg.GetImage().GetImage(), imageID, conf.RootfsImageRef, errdefs.ErrFailedPrecondition)
	}
	var labels map[string]string
	if processState {
		if !hostfs.IsDir(filepath.Join(stage, checkpointName)) {
			return "", fmt.Errorf("checkpoint_path: the checkpoint of container %q has no process state: %w", name, errdefs.ErrFailedPrecondition)
		}
		labels = map[string]string{dockerspec.LabelRestore: checkpointName}
	}

	id, err := s.runtime.CreateContainer(ctx, sb, cfg, dockerspec.ContainerName(sb.Metadata, cfg.GetMetadata()), labels)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	undo.Push("remove restored container "+dockerspec.ShortID(id), func(ctx context.Context) error { return s.runtime.RemoveContainer(ctx, id) })
	in, err := s.docker.InspectContainer(ctx, id)
	if err != nil {
		return "", err
	}
	if err := dockerspec.CheckRestoredProcess(field, in, spec); err != nil {
		return "", err
	}
	if err := s.restoreFiles(ctx, id, in, filepath.Join(stage, archive.RootfsDiffTar), stage); err != nil {
		return "", fmt.Errorf("restoring the files of container %q: %w", name, err)
	}
	if err := s.applyDeletions(ctx, id, in, d, deleted); err != nil {
		return "", fmt.Errorf("restoring the files of container %q: %w", name, err)
	}
	if processState {
		// Docker restores only from the container's own checkpoint
		// directory: the images go there, and go with the container.
		dst := filepath.Join(d.CheckpointDir(id), checkpointName)
		if err := moveTree(filepath.Join(stage, checkpointName), dst); err != nil {
			return "", fmt.Errorf("%w: putting the CRIU images of container %q where Docker restores from (%s): %w", errdefs.ErrInternal, name, dst, err)
		}
	}
	return id, nil
}

// restoreFiles copies what rootfs-diff.tar holds into the created
// container, leaving out what lands on its mounts.
func (s *Service) restoreFiles(ctx context.Context, id string, in container.InspectResponse, diffPath, work string) error {
	diff, err := os.Open(diffPath)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", archive.RootfsDiffTar, err, errdefs.ErrInvalidArgument)
	}
	defer diff.Close()
	filtered, err := os.CreateTemp(work, "files-")
	if err != nil {
		return err
	}
	defer filtered.Close()
	if err := archive.FilterTar(filtered, diff, dockerspec.CheckpointSkipPaths(in)); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	if _, err := filtered.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := tar.NewReader(filtered).Next(); errors.Is(err, io.EOF) {
		return nil // nothing to copy (a read-only root filesystem, say)
	}
	if _, err := filtered.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return s.docker.CopyToContainer(ctx, id, "/", filtered)
}

// applyDeletions removes from a created container's filesystem the image
// files the checkpointed container had deleted. Docker has no call for
// that, so Berth writes overlay whiteouts (0/0 character devices) into the
// container's writable layer, which is not mounted until it starts.
func (s *Service) applyDeletions(ctx context.Context, id string, in container.InspectResponse, d docker.DaemonInfo, deleted []string) error {
	if len(deleted) == 0 {
		return nil
	}
	upper, err := s.writableLayerDir(ctx, id, in, d)
	if err != nil {
		return err
	}
	for _, p := range deleted {
		target := filepath.Join(upper, filepath.FromSlash(strings.TrimPrefix(p, "/")))
		if !hostfs.IsDir(filepath.Dir(target)) {
			return fmt.Errorf("%w: the checkpoint deletes %s, but its directory is not in the container's writable layer", errdefs.ErrInternal, p)
		}
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
		}
		if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("%w: deleting %s (an overlay whiteout in %s): %w", errdefs.ErrInternal, p, upper, err)
		}
	}
	return nil
}

// writableLayerDir finds a created container's overlay upper directory:
// overlay2 (the classic store) names it; the containerd store's overlayfs
// snapshotter does not, so Berth copies a uniquely named marker file into
// the container and looks for it among the snapshots.
func (s *Service) writableLayerDir(ctx context.Context, id string, in container.InspectResponse, d docker.DaemonInfo) (string, error) {
	if gd := in.GraphDriver; gd != nil && gd.Name == "overlay2" && gd.Data["UpperDir"] != "" {
		return gd.Data["UpperDir"], nil
	}
	if !d.ContainerdImageStore || d.StorageDriver != "overlayfs" {
		driver := d.StorageDriver
		return "", fmt.Errorf("the checkpoint deletes image files, which Berth does with overlay whiteouts, and Docker's storage here is %q: %w", driver, errdefs.ErrFailedPrecondition)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := ".berth-restore-" + hex.EncodeToString(rnd[:])
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: marker, Mode: 0o600, Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := s.docker.CopyToContainer(ctx, id, "/", &buf); err != nil {
		return "", fmt.Errorf("finding the container's writable layer: %w", err)
	}
	for _, base := range d.ImageStorageDirs() {
		found, _ := filepath.Glob(filepath.Join(base, "snapshots", "*", "fs", marker))
		if len(found) == 1 {
			if err := os.Remove(found[0]); err != nil {
				return "", fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
			}
			return filepath.Dir(found[0]), nil
		}
	}
	return "", fmt.Errorf("%w: cannot find container %s's writable layer among containerd's overlayfs snapshots (%s)", errdefs.ErrInternal, dockerspec.ShortID(id), strings.Join(d.ImageStorageDirs(), ", "))
}

// moveTree moves the directory src to dst (whose parent it creates),
// copying when they are on different filesystems.
func moveTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err == nil || !errors.Is(err, unix.EXDEV) {
		return err
	}
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
