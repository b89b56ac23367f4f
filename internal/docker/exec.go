package docker

import (
	"context"
	"io"

	"github.com/moby/moby/client"
)

// ExecConfig says what an exec runs and which of its streams are attached.
type ExecConfig struct {
	Cmd []string
	Tty bool
	// Stdin, Stdout and Stderr attach the process's standard streams.
	Stdin, Stdout, Stderr bool
}

// ExecState is Docker's view of one exec.
type ExecState struct {
	Running bool
	// ExitCode is meaningful once Running is false and Pid is set (or the
	// start failed: Docker then reports 126 and no pid).
	ExitCode int
	// Pid is the process's pid in the host's pid namespace; 0 until it
	// started, and after a failed start.
	Pid int
}

// Stream is a hijacked connection to a process's standard streams, as
// Docker's exec start and container attach return it. Reading gives the
// output: raw with a tty, multiplexed (stdcopy) without. Writing feeds stdin;
// CloseWrite ends it. Close ends the connection, not the process.
type Stream struct {
	hr client.HijackedResponse
}

func (s *Stream) Read(p []byte) (int, error)  { return s.hr.Reader.Read(p) }
func (s *Stream) Write(p []byte) (int, error) { return s.hr.Conn.Write(p) }

// CloseWrite ends the process's stdin.
func (s *Stream) CloseWrite() error { return s.hr.CloseWrite() }

// Close closes the connection; a Read blocked on it returns.
func (s *Stream) Close() error {
	s.hr.Close()
	return nil
}

var _ io.ReadWriteCloser = (*Stream)(nil)

// CreateExec prepares cfg.Cmd to run in a running container and returns the
// exec's id. Nothing runs until StartExec.
func (c *Client) CreateExec(ctx context.Context, containerID string, cfg ExecConfig) (string, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ExecCreate(ctx, containerID, client.ExecCreateOptions{
		Cmd:          cfg.Cmd,
		TTY:          cfg.Tty,
		AttachStdin:  cfg.Stdin,
		AttachStdout: cfg.Stdout,
		AttachStderr: cfg.Stderr,
	})
	if err != nil {
		return "", Classify(err)
	}
	return res.ID, nil
}

// StartExec starts an exec and attaches to its streams. ctx (bounded by the
// request timeout) covers the start only: the stream lasts as long as the
// process or until it is closed.
func (c *Client) StartExec(ctx context.Context, execID string, tty bool) (*Stream, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ExecAttach(ctx, execID, client.ExecAttachOptions{TTY: tty})
	if err != nil {
		return nil, Classify(err)
	}
	return &Stream{hr: res.HijackedResponse}, nil
}

// ResizeExec sets the size of an exec's terminal.
func (c *Client) ResizeExec(ctx context.Context, execID string, height, width uint) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ExecResize(ctx, execID, client.ExecResizeOptions{Height: height, Width: width})
	return Classify(err)
}

// InspectExec returns whether an exec runs, its pid and its exit code.
func (c *Client) InspectExec(ctx context.Context, execID string) (ExecState, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ExecInspect(ctx, execID, client.ExecInspectOptions{})
	if err != nil {
		return ExecState{}, Classify(err)
	}
	return ExecState{Running: res.Running, ExitCode: res.ExitCode, Pid: res.PID}, nil
}

// AttachContainer attaches to a running container's standard streams (as
// `docker attach` does, without replaying logs). The stream lasts until the
// container's output ends or it is closed.
func (c *Client) AttachContainer(ctx context.Context, containerID string, stdin, stdout, stderr bool) (*Stream, error) {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	res, err := c.api().ContainerAttach(ctx, containerID, client.ContainerAttachOptions{
		Stream: true,
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
	})
	if err != nil {
		return nil, Classify(err)
	}
	return &Stream{hr: res.HijackedResponse}, nil
}

// ResizeContainer sets the size of a container's terminal.
func (c *Client) ResizeContainer(ctx context.Context, containerID string, height, width uint) error {
	ctx, cancel := c.WithTimeout(ctx)
	defer cancel()
	_, err := c.api().ContainerResize(ctx, containerID, client.ContainerResizeOptions{Height: height, Width: width})
	return Classify(err)
}
