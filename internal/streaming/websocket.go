package streaming

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criremotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/panics"
)

// The channels of the channel.k8s.io WebSocket protocols, by number.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// serveWebSocketV5 serves an exec or attach over WebSocket
// v5.channel.k8s.io: the channel framing of v4 (one byte of channel number
// per binary message, a JSON status on the error channel) plus the CLOSE
// message (255, channel) with which the client ends its stdin. wsstream
// implements the framing and CLOSE; this wires the channels to the runtime
// and writes the status.
func (s *Server) serveWebSocketV5(w http.ResponseWriter, r *http.Request, req proto.Message) {
	var (
		stdin, stdout, stderr, tty bool
		run                        func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan TerminalSize) error
	)
	switch q := req.(type) {
	case *runtimeapi.ExecRequest:
		stdin, stdout, stderr, tty = q.GetStdin(), q.GetStdout(), q.GetStderr(), q.GetTty()
		run = func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan TerminalSize) error {
			return s.runtime.Exec(ctx, q.GetContainerId(), q.GetCmd(), in, out, errOut, q.GetTty(), resize)
		}
	case *runtimeapi.AttachRequest:
		stdin, stdout, stderr, tty = q.GetStdin(), q.GetStdout(), q.GetStderr(), q.GetTty()
		run = func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan TerminalSize) error {
			return s.runtime.Attach(ctx, q.GetContainerId(), in, out, errOut, q.GetTty(), resize)
		}
	default:
		http.NotFound(w, r)
		return
	}

	channels := make([]wsstream.ChannelType, 5)
	channels[chanStdin] = channelType(stdin, wsstream.ReadChannel)
	channels[chanStdout] = channelType(stdout, wsstream.WriteChannel)
	channels[chanStderr] = channelType(stderr, wsstream.WriteChannel)
	channels[chanError] = wsstream.WriteChannel
	channels[chanResize] = wsstream.ReadChannel
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		criremotecommand.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(s.idle)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "error", err)
		return
	}
	defer conn.Close()

	// An empty message on the lowest channel the client reads tells it the
	// streams are up, as cri-streaming does.
	switch {
	case stdout:
		_, _ = streams[chanStdout].Write(nil)
	case stderr:
		_, _ = streams[chanStderr].Write(nil)
	default:
		_, _ = streams[chanError].Write(nil)
	}

	// The resize channel is always read, or a client sending sizes would
	// stall the connection; sizes reach the runtime only with a tty.
	sizes := make(chan TerminalSize)
	panics.Go(r.Context(), panics.Streaming, func() { decodeResizes(r.Context(), streams[chanResize], sizes) })
	var resize <-chan TerminalSize
	if tty {
		resize = sizes
	} else {
		panics.Go(r.Context(), panics.Streaming, func() {
			for range sizes {
			}
		})
	}

	var in io.Reader
	var out, errOut io.WriteCloser
	if stdin {
		in = streams[chanStdin]
	}
	if stdout {
		out = streams[chanStdout]
	}
	if stderr {
		errOut = streams[chanStderr]
	}
	runErr := run(r.Context(), in, out, errOut, resize)
	if err := writeStatus(streams[chanError], runErr); err != nil {
		s.log.Debug("writing a stream's status", "error", err)
	}
}

func channelType(requested bool, t wsstream.ChannelType) wsstream.ChannelType {
	if requested {
		return t
	}
	return wsstream.IgnoreChannel
}

// decodeResizes reads the JSON terminal sizes the client sends until the
// channel or ctx ends, then closes sizes.
func decodeResizes(ctx context.Context, r io.Reader, sizes chan<- TerminalSize) {
	defer close(sizes)
	dec := json.NewDecoder(r)
	for {
		var size TerminalSize
		if err := dec.Decode(&size); err != nil {
			return
		}
		select {
		case sizes <- size:
		case <-ctx.Done():
			return
		}
	}
}

// status is the JSON the v4 and v5 protocols put on the error channel: a
// subset of Kubernetes' metav1.Status, which clients decode it into.
type status struct {
	Status  string         `json:"status,omitempty"`
	Message string         `json:"message,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Details *statusDetails `json:"details,omitempty"`
	Code    int32          `json:"code,omitempty"`
}

type statusDetails struct {
	Causes []statusCause `json:"causes,omitempty"`
}

type statusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// writeStatus reports how the command ended: success, its non-zero exit
// code (which clients turn into an exit error with that code), or an error.
func writeStatus(w io.Writer, err error) error {
	st := status{Status: "Success"}
	if exit, ok := err.(utilexec.ExitError); ok && exit.Exited() {
		st = status{
			Status: "Failure",
			Reason: criremotecommand.NonZeroExitCodeReason,
			Details: &statusDetails{Causes: []statusCause{{
				Type:    criremotecommand.ExitCodeCauseType,
				Message: fmt.Sprint(exit.ExitStatus()),
			}}},
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", exit),
		}
	} else if err != nil {
		st = status{
			Status:  "Failure",
			Reason:  "InternalError",
			Code:    http.StatusInternalServerError,
			Message: fmt.Sprintf("Internal error occurred: error executing command in container: %v", err),
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
