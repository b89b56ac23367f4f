// Package streaming is the runtime adapter behind k8s.io/cri-streaming: it
// runs commands in containers with docker exec (also for ExecSync), attaches
// to containers' standard streams, and forwards ports by dialling them inside
// the pod's network namespace. Server serves all three on the URLs the Exec,
// Attach and PortForward RPCs return.
package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criremotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
	"github.com/berth-cri/berth/internal/store"
)

// Docker is the part of the Docker client that runs and attaches to
// processes.
type Docker interface {
	CreateExec(ctx context.Context, containerID string, cfg docker.ExecConfig) (string, error)
	StartExec(ctx context.Context, execID string, tty bool) (*docker.Stream, error)
	ResizeExec(ctx context.Context, execID string, height, width uint) error
	InspectExec(ctx context.Context, execID string) (docker.ExecState, error)
	AttachContainer(ctx context.Context, containerID string, stdin, stdout, stderr bool) (*docker.Stream, error)
	ResizeContainer(ctx context.Context, containerID string, height, width uint) error
}

// Index finds the containers and sandboxes Berth serves (internal/store).
type Index interface {
	ResolveContainer(idOrPrefix string) (*store.Container, error)
	ResolveSandbox(idOrPrefix string) (*store.Sandbox, error)
}

// TerminalSize is a terminal's size in characters.
type TerminalSize = criremotecommand.TerminalSize

// Runtime runs, attaches and forwards for the streaming server and
// ExecSync. It is safe for concurrent use.
type Runtime struct {
	docker Docker
	index  Index
	log    *slog.Logger
}

// NewRuntime returns a Runtime. It does no I/O.
func NewRuntime(d Docker, index Index, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.Default()
	}
	return &Runtime{docker: d, index: index, log: log.With("component", "streaming")}
}

// ExecOptions are one command to run in a container and where its
// standard streams go. A nil stream is not attached.
type ExecOptions struct {
	Cmd    []string
	Tty    bool
	Stdin  io.Reader
	Stdout io.Writer
	// Stderr is ignored with a tty: the terminal merges it into Stdout.
	Stderr io.Writer
	// Resize, if not nil, delivers terminal sizes until it is closed.
	Resize <-chan TerminalSize
}

// ExecResult is how a command ended.
type ExecResult struct {
	ExitCode int
	// StartError is set when the command could not be started at all (no
	// such executable, not executable): ExitCode is then 127 or 126, as a
	// shell reports them, and this is the runtime's message. Docker wrote
	// the message to the output too; callers that return it as stderr
	// replace the output with it.
	StartError string
}

// RunExec runs o.Cmd in a running container until it exits and returns how
// it ended; a non-zero exit code is a result, not an error. If ctx ends
// first, or writing its output fails (the caller went away), the process
// and everything it started are killed and the error says why.
func (r *Runtime) RunExec(ctx context.Context, containerID string, o ExecOptions) (ExecResult, error) {
	c, err := r.runningContainer(containerID)
	if err != nil {
		return ExecResult{}, err
	}
	if o.Tty {
		o.Stderr = nil
	}
	execID, err := r.docker.CreateExec(ctx, c.ID, docker.ExecConfig{
		Cmd: o.Cmd, Tty: o.Tty,
		Stdin: o.Stdin != nil, Stdout: o.Stdout != nil, Stderr: o.Stderr != nil,
	})
	if err != nil {
		return ExecResult{}, fmt.Errorf("creating exec in container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	stream, err := r.docker.StartExec(ctx, execID, o.Tty)
	if err != nil {
		return ExecResult{}, fmt.Errorf("starting exec in container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	defer stream.Close()

	done := make(chan struct{})
	defer close(done)
	if o.Resize != nil {
		panics.Go(ctx, panics.Streaming, func() {
			r.forwardResizes(done, o.Resize, func(ctx context.Context, s TerminalSize) error {
				return r.docker.ResizeExec(ctx, execID, uint(s.Height), uint(s.Width))
			})
		})
	}
	if o.Stdin != nil {
		panics.Go(ctx, panics.Streaming, func() { copyStdin(stream, o.Stdin) })
	}
	// Docker writes why a command could not start to the output stream;
	// head keeps its beginning for ExecResult.StartError.
	head := &headBuffer{max: 4 << 10}
	copied := make(chan error, 1)
	panics.GoThen(ctx, panics.Streaming, func() error { return copyOutput(stream, o.Tty, o.Stdout, o.Stderr, head) },
		func(err error) { copied <- err })

	select {
	case err := <-copied:
		if err != nil {
			r.killExec(execID, c)
			return ExecResult{}, fmt.Errorf("copying the output of exec in container %s: %w", dockerspec.ShortID(c.ID), err)
		}
	case <-ctx.Done():
		r.killExec(execID, c)
		stream.Close()
		<-copied
		return ExecResult{}, ctx.Err()
	}

	st, err := r.waitExec(ctx, execID)
	if err != nil {
		if ctx.Err() != nil {
			r.killExec(execID, c)
		}
		return ExecResult{}, err
	}
	return execResult(st, head.String()), nil
}

// execResult turns Docker's final view of an exec into a result. Docker
// 20.10 reports every failed start as 126; newer releases report a missing
// executable as 127. Berth reports 127 for a missing executable and 126 for
// one that cannot be run, on every Docker, as shells do.
func execResult(st docker.ExecState, output string) ExecResult {
	res := ExecResult{ExitCode: st.ExitCode}
	if st.Pid != 0 || (st.ExitCode != 126 && st.ExitCode != 127) {
		return res
	}
	res.StartError = trimMessage(output)
	if res.StartError == "" {
		res.StartError = "the command could not be started"
	}
	if isNotFound(res.StartError) {
		res.ExitCode = 127
	} else {
		res.ExitCode = 126
	}
	return res
}

// waitExec waits for Docker to report the exec ended. Its output can end
// before it does (it may close its stdout and go on), so this polls, ever
// more slowly, until it ends or ctx does.
func (r *Runtime) waitExec(ctx context.Context, execID string) (docker.ExecState, error) {
	delay := 5 * time.Millisecond
	for {
		st, err := r.docker.InspectExec(ctx, execID)
		if err != nil {
			return st, fmt.Errorf("inspecting exec %s: %w", dockerspec.ShortID(execID), err)
		}
		if !st.Running {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// Exec implements the cri-streaming runtime: a non-zero exit code becomes
// the error cri-streaming reports to the client as the exit code. A panic
// becomes the error (cri-streaming may call it on a goroutine of its own).
func (r *Runtime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan TerminalSize) (err error) {
	defer panics.Recover(ctx, panics.Streaming, &err)
	o := ExecOptions{Cmd: cmd, Tty: tty, Resize: resize}
	// NOTE: cri-streaming hands over nil interfaces for streams the client
	// did not ask for; keep them nil, not typed-nil writers.
	if in != nil {
		o.Stdin = in
	}
	if out != nil {
		o.Stdout = out
	}
	if errOut != nil {
		o.Stderr = errOut
	}
	res, err := r.RunExec(ctx, containerID, o)
	if err != nil {
		return err
	}
	if res.ExitCode == 0 {
		return nil
	}
	msg := fmt.Sprintf("command exited with code %d", res.ExitCode)
	if res.StartError != "" {
		msg = res.StartError
	}
	return exitError(res.ExitCode, msg)
}

// Attach implements the cri-streaming runtime: it connects the client to a
// running container's standard streams until the container's output ends,
// the client goes away, or ctx ends. It never stops the container. A panic
// becomes the error.
func (r *Runtime) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan TerminalSize) (err error) {
	defer panics.Recover(ctx, panics.Streaming, &err)
	c, err := r.runningContainer(containerID)
	if err != nil {
		return err
	}
	var stdout, stderr io.Writer
	if out != nil {
		stdout = out
	}
	if errOut != nil && !c.Tty {
		stderr = errOut
	}
	// The stream's framing follows the container's tty, whatever the
	// client asked for.
	stream, err := r.docker.AttachContainer(ctx, c.ID, in != nil && c.Stdin, stdout != nil, stderr != nil)
	if err != nil {
		return fmt.Errorf("attaching to container %s: %w", dockerspec.ShortID(c.ID), err)
	}
	defer stream.Close()

	done := make(chan struct{})
	defer close(done)
	if resize != nil {
		panics.Go(ctx, panics.Streaming, func() {
			r.forwardResizes(done, resize, func(ctx context.Context, s TerminalSize) error {
				return r.docker.ResizeContainer(ctx, c.ID, uint(s.Height), uint(s.Width))
			})
		})
	}
	switch {
	case in != nil && c.Stdin:
		// Ending stdin detaches it; Docker also closes the container's
		// stdin when the container has stdin_once.
		panics.Go(ctx, panics.Streaming, func() { copyStdin(stream, in) })
	case in != nil:
		// The container has no stdin: drain what the client sends rather
		// than let its stream buffer it.
		panics.Go(ctx, panics.Streaming, func() { _, _ = io.Copy(io.Discard, in) })
	}
	copied := make(chan error, 1)
	panics.GoThen(ctx, panics.Streaming, func() error { return copyOutput(stream, c.Tty, stdout, stderr, nil) },
		func(err error) { copied <- err })
	select {
	case err := <-copied:
		return err
	case <-ctx.Done():
		stream.Close()
		<-copied
		return ctx.Err()
	}
}

// runningContainer resolves a container that must be running.
func (r *Runtime) runningContainer(id string) (*store.Container, error) {
	c, err := r.index.ResolveContainer(id)
	if err != nil {
		return nil, err
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %s is not running: %w", dockerspec.ShortID(c.ID), errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// forwardResizes applies each terminal size from sizes until it is closed
// or done is. Docker refuses to resize an exec that has not started yet, so
// a size that fails is retried for a little while.
func (r *Runtime) forwardResizes(done <-chan struct{}, sizes <-chan TerminalSize, resize func(context.Context, TerminalSize) error) {
	for {
		var size TerminalSize
		var ok bool
		select {
		case <-done:
			return
		case size, ok = <-sizes:
			if !ok {
				return
			}
		}
		if size.Height == 0 || size.Width == 0 {
			continue
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := resize(ctx, size)
			cancel()
			if err == nil || attempt == 10 {
				if err != nil {
					r.log.Debug("resizing a terminal", "error", err)
				}
				break
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// copyStdin feeds the process's stdin until in ends, then closes it.
func copyStdin(stream *docker.Stream, in io.Reader) {
	_, _ = io.Copy(stream, in)
	_ = stream.CloseWrite()
}

// copyOutput copies a Docker stream's output until it ends: raw with a tty,
// demultiplexed without. Streams the caller did not attach are discarded.
// head, if not nil, sees the first bytes of stdout.
func copyOutput(stream io.Reader, tty bool, stdout, stderr io.Writer, head *headBuffer) error {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if head != nil {
		stdout = io.MultiWriter(head, stdout)
	}
	var err error
	if tty {
		_, err = io.Copy(stdout, stream)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, stream)
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
