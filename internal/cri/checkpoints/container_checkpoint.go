package checkpoints

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/hostfs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
)

// checkpointName is the name Berth gives Docker's checkpoints. Docker keeps
// a checkpoint's CRIU images in <checkpoint dir>/<name>, so a container
// archive's checkpoint/ directory, extracted, is a Docker checkpoint.
const checkpointName = archive.CheckpointDirectory

// CheckpointContainer writes a checkpoint archive of a running container to
// the path kubelet gives (forensic container checkpointing), in CRI-O's
// layout: config.dump, spec.dump, rootfs-diff.tar, deleted.files and
// CRIU's images of the processes in checkpoint/. The processes are dumped
// with Docker's checkpoint API, which only an experimental daemon with CRIU
// has; without it the call fails, since an archive without the processes
// is not what kubelet asked for. The container is paused while it is
// captured, so that its files and processes are of one moment, and keeps
// running.
func (s *Service) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	loc := req.GetLocation()
	if !filepath.IsAbs(loc) {
		return nil, errdefs.InvalidArgument("location", "%q must be the absolute path of the archive to write", loc)
	}
	if !hostfs.IsDir(filepath.Dir(loc)) {
		return nil, errdefs.InvalidArgument("location", "the directory of %s does not exist", loc)
	}
	if req.GetTimeout() < 0 {
		return nil, errdefs.InvalidArgument("timeout", "%d is negative", req.GetTimeout())
	}
	c, err := s.store.ResolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	h, err := s.runtime.DaemonReady(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.Daemon.Checkpoints(); err != nil {
		return nil, fmt.Errorf("container_id: cannot checkpoint container %s: %v: %w", dockerspec.ShortID(c.ID), err, errdefs.ErrFailedPrecondition)
	}
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	unlock := s.runtime.Lock(c.ID)
	defer unlock()
	if c, _ = s.store.Container(c.ID); c == nil || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container_id: container %s is not running: %w", dockerspec.ShortID(req.GetContainerId()), errdefs.ErrFailedPrecondition)
	}
	resume, err := s.pauseAll(ctx, []string{c.ID})
	defer resume()
	if err != nil {
		return nil, err
	}
	sb, _ := s.store.Sandbox(c.SandboxID)
	err = writeFileAtomically(loc, func(w io.Writer) error {
		return s.writeContainerArchive(ctx, c, sb, w, true)
	})
	if err != nil {
		return nil, fmt.Errorf("checkpointing container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	logging.FromContext(ctx).Info("container checkpointed", "id", dockerspec.ShortID(c.ID), "archive", loc)
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// pauseAll freezes the containers, in order, and returns the function that
// thaws those it froze. The thaw runs even when ctx is done: a checkpoint
// never leaves a container frozen.
func (s *Service) pauseAll(ctx context.Context, ids []string) (resume func(), err error) {
	var paused []string
	resume = func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.requestTimeout)
		defer cancel()
		for _, id := range paused {
			if err := s.docker.UnpauseContainer(tctx, id); err != nil {
				logging.FromContext(ctx).Error("cannot resume a container paused for a checkpoint", "id", dockerspec.ShortID(id), "error", err)
			}
		}
	}
	for _, id := range ids {
		if err := s.docker.PauseContainer(ctx, id); err != nil {
			return resume, fmt.Errorf("pausing container %s: %w", dockerspec.ShortID(id), err)
		}
		paused = append(paused, id)
	}
	return resume, nil
}

// writeContainerArchive writes a container's checkpoint archive to w. With
// processState it has CRIU's images of the processes (Docker's checkpoint
// API); without, only the container's description and files.
func (s *Service) writeContainerArchive(ctx context.Context, c *store.Container, sb *store.Sandbox, w io.Writer, processState bool) error {
	in, err := s.docker.InspectContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	work, err := s.workDir("checkpoint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	aw := archive.NewWriter(w)
	if err := aw.JSON(archive.ConfigDumpFile, dockerspec.CheckpointConfig(in, c, time.Now())); err != nil {
		return err
	}
	if err := aw.JSON(archive.SpecDumpFile, dockerspec.CheckpointSpec(in, c, sb)); err != nil {
		return err
	}
	if processState {
		if err := s.docker.CheckpointContainer(ctx, c.ID, work, checkpointName); err != nil {
			return fmt.Errorf("dumping the processes (Docker's checkpoint API, CRIU): %w%s", err, criuLogErrors(err))
		}
		if err := aw.Tree(archive.CheckpointDirectory, filepath.Join(work, checkpointName)); err != nil {
			return err
		}
	}
	// The diff is spooled to a file first: a tar member's size comes
	// before its contents.
	diff, err := os.CreateTemp(work, "rootfs-diff-")
	if err != nil {
		return err
	}
	defer diff.Close()
	changes, err := s.docker.ContainerChanges(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("listing the container's changed files: %w", err)
	}
	copyFrom := func(ctx context.Context, p string) (io.ReadCloser, error) {
		return s.docker.CopyFromContainer(ctx, c.ID, p)
	}
	deleted, err := archive.WriteRootfsDiff(ctx, diff, changes, copyFrom, dockerspec.CheckpointSkipPaths(in))
	if err != nil {
		return err
	}
	size, err := diff.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := diff.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := aw.File(archive.RootfsDiffTar, diff, size); err != nil {
		return err
	}
	if len(deleted) > 0 {
		if err := aw.JSON(archive.DeletedFilesFile, deleted); err != nil {
			return err
		}
	}
	return aw.Close()
}

// workDir makes a fresh directory for one checkpoint or restore under
// Berth's root directory, where Docker (on the same host) can read and
// write it too.
func (s *Service) workDir(prefix string) (string, error) {
	base := filepath.Join(s.rootDir, "checkpoints")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	return dir, nil
}

// writeFileAtomically writes a file through write: into a temporary file
// next to it, synced and renamed into place once complete, removed if
// anything fails. A reader never sees half an archive.
func writeFileAtomically(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInternal, err)
	}
	done = true
	return nil
}

// criuLogRE finds the CRIU log runc names when CRIU fails.
var criuLogRE = regexp.MustCompile(`path= (/\S+/criu-(?:dump|restore)\.log)`)

// criuLogErrors returns the error lines of the CRIU log a failure names
// (runc's message says only that CRIU failed), or "".
func criuLogErrors(err error) string {
	m := criuLogRE.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	data, rerr := os.ReadFile(m[1])
	if rerr != nil {
		return ""
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "Error ("); i >= 0 && len(lines) < 5 {
			lines = append(lines, strings.TrimSpace(line[i:]))
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "; CRIU's log says: " + strings.Join(lines, "; ")
}
