package cri

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/streaming"
)

const (
	// maxExecSyncStream caps each of ExecSync's stdout and stderr, as
	// kubelet expects (it receives at most 16 MiB in one message).
	maxExecSyncStream = 16 << 20
	// maxExecSyncOutput caps both streams together, so the response always
	// fits in one CRI message (16 MiB, with room for the rest of it):
	// beyond that gRPC would refuse to send it and the exit code would be
	// lost with it.
	maxExecSyncOutput = 16<<20 - 4<<10
)

// ExecSync runs a command in a running container until it exits and
// returns its output and exit code; a non-zero exit code is a result, not
// an error. With a timeout, a command still running when it passes is
// killed (with everything it started) and the call fails with
// DeadlineExceeded. Output beyond the caps is read and discarded, so a
// command that prints forever costs no memory.
func (s *Service) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	if len(req.GetCmd()) == 0 {
		return nil, errdefs.InvalidArgument("cmd", "must not be empty")
	}
	if req.GetTimeout() < 0 {
		return nil, errdefs.InvalidArgument("timeout", "must not be negative")
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	runCtx := ctx
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	budget := &outputBudget{left: maxExecSyncOutput}
	stdout := &cappedBuffer{max: maxExecSyncStream, budget: budget}
	stderr := &cappedBuffer{max: maxExecSyncStream, budget: budget}
	res, err := s.stream.exec.RunExec(runCtx, c.ID, streaming.ExecOptions{Cmd: req.GetCmd(), Stdout: stdout, Stderr: stderr})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("command %q in container %s did not finish within %s and was killed: %w",
				req.GetCmd(), dockerspec.ShortID(c.ID), timeout, errdefs.ErrDeadlineExceeded)
		}
		return nil, err
	}
	out, errOut := stdout.Bytes(), stderr.Bytes()
	if res.StartError != "" {
		// Docker wrote why the command could not start to stdout; it is
		// an error message, so it is reported as stderr.
		out, errOut = nil, []byte(res.StartError+"\n")
	}
	if stdout.dropped > 0 || stderr.dropped > 0 {
		logging.FromContext(ctx).Debug("exec output truncated", "id", dockerspec.ShortID(c.ID),
			"stdoutDropped", stdout.dropped, "stderrDropped", stderr.dropped)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: out, Stderr: errOut, ExitCode: int32(res.ExitCode)}, nil
}

// Exec returns the URL on the streaming server where the command runs,
// once, when a client connects.
func (s *Service) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgument("container_id", "must not be empty")
	}
	if len(req.GetCmd()) == 0 {
		return nil, errdefs.InvalidArgument("cmd", "must not be empty")
	}
	if err := validateStreams(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := &runtimeapi.ExecRequest{
		ContainerId: c.ID, Cmd: req.GetCmd(), Tty: req.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	}
	return s.stream.urls.GetExec(r)
}

// validateStreams checks the streams an Exec or Attach asks for.
func validateStreams(tty, stdin, stdout, stderr bool) error {
	if tty && stderr {
		return errdefs.InvalidArgument("stderr", "must be false with tty: a terminal merges stderr into stdout")
	}
	if !stdin && !stdout && !stderr {
		return errdefs.InvalidArgument("stdin", "one of stdin, stdout and stderr must be set")
	}
	return nil
}

// runningContainer resolves a container that must be running.
func (s *Service) runningContainer(id string) (*store.Container, error) {
	c, err := s.store.ResolveContainer(id)
	if err != nil {
		return nil, err
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %s is %v, not running: %w", dockerspec.ShortID(c.ID), c.State, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// outputBudget is what the streams of one ExecSync may still keep
// together.
type outputBudget struct {
	mu   sync.Mutex // guards left
	left int
}

// take grants up to n bytes.
func (b *outputBudget) take(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.left)
	b.left -= n
	return n
}

// cappedBuffer keeps what is written to it up to max bytes and the shared
// budget, and discards the rest without failing the writer. It stores
// chunks, not one growing slice, so keeping 16 MiB never holds a second,
// doubled copy while it grows.
type cappedBuffer struct {
	max     int
	budget  *outputBudget
	chunks  [][]byte
	n       int
	dropped int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	keep := c.budget.take(min(len(p), c.max-c.n))
	c.dropped += int64(len(p) - keep)
	for rest := p[:keep]; len(rest) > 0; {
		last := len(c.chunks) - 1
		if last < 0 || len(c.chunks[last]) == cap(c.chunks[last]) {
			// Chunks grow with the output: small for a probe's few
			// bytes, up to 1 MiB for a flood.
			c.chunks = append(c.chunks, make([]byte, 0, min(max(c.n, 4<<10), 1<<20)))
			last++
		}
		n := min(len(rest), cap(c.chunks[last])-len(c.chunks[last]))
		c.chunks[last] = append(c.chunks[last], rest[:n]...)
		rest = rest[n:]
		c.n += n
	}
	return len(p), nil
}

// Bytes returns what was kept.
func (c *cappedBuffer) Bytes() []byte {
	if len(c.chunks) == 1 {
		return c.chunks[0]
	}
	out := make([]byte, 0, c.n)
	for _, ch := range c.chunks {
		out = append(out, ch...)
	}
	return out
}
