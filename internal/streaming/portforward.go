package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/panics"
)

// dialTimeout bounds connecting to a port inside a pod.
const dialTimeout = 10 * time.Second

// PortForward implements the cri-streaming runtime: it connects stream to
// port on the pod's loopback, dialled from inside the pod's network
// namespace (IPv4 first, then IPv6), and copies both ways. When the client
// ends its side, the pod's side is half-closed; when the pod's side ends,
// PortForward returns and cri-streaming closes the stream. cri-streaming
// calls it on a goroutine of its own per stream: a panic becomes the error.
func (r *Runtime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) (err error) {
	defer panics.Recover(ctx, panics.Streaming, &err)
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535: %w", port, errdefs.ErrInvalidArgument)
	}
	sb, err := r.index.ResolveSandbox(podSandboxID)
	if err != nil {
		return err
	}
	if !sb.Running || sb.Pid == 0 {
		return fmt.Errorf("pod sandbox %s is not running: %w", dockerspec.ShortID(sb.ID), errdefs.ErrFailedPrecondition)
	}
	nsPath := "/proc/" + strconv.Itoa(sb.Pid) + "/ns/net"
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, err := netns.Dial(dialCtx, nsPath, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		var err6 error
		if conn, err6 = netns.Dial(dialCtx, nsPath, "tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port)))); err6 != nil {
			cancel()
			return fmt.Errorf("connecting to port %d in pod sandbox %s: %w", port, dockerspec.ShortID(sb.ID), err)
		}
	}
	cancel()
	defer conn.Close()

	// Client to pod: at the client's end of stream, half-close towards the
	// pod so it sees EOF and can still answer; if the stream broke, close
	// the connection so the copy below ends too.
	panics.Go(ctx, panics.Streaming, func() {
		_, err := io.Copy(conn, stream)
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				return
			}
		}
		_ = conn.Close()
	})
	// Pod to client, until the pod closes its end.
	if _, err := io.Copy(stream, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("forwarding port %d of pod sandbox %s: %w", port, dockerspec.ShortID(sb.ID), err)
	}
	return nil
}
