// Package netns opens TCP connections from inside another network namespace
// (a pod's), so Berth can forward ports into pods without nsenter or socat
// on the host.
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/panics"
)

// Dial connects to address over network ("tcp4", "tcp6") from inside the
// network namespace at nsPath (e.g. /proc/<pid>/ns/net). The connection's
// socket belongs to that namespace; reading and writing it afterwards works
// from any thread.
func Dial(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	defer target.Close()

	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	// NOTE: the namespace switch is confined to one locked OS thread of a
	// goroutine of its own. If the thread cannot be switched back, it stays
	// locked and Go discards it when the goroutine exits, so no other
	// goroutine ever runs in the pod's namespace. A panic leaves it locked
	// too (panics.GoThen recovers on the same goroutine): the thread may
	// be in the pod's namespace then.
	var conn net.Conn
	panics.GoThen(ctx, panics.Netns, func() error {
		runtime.LockOSThread()
		c, restored, err := dialIn(ctx, int(target.Fd()), network, address)
		if restored {
			runtime.UnlockOSThread()
		}
		conn = c
		return err
	}, func(err error) { done <- result{conn, err} })
	r := <-done
	return r.conn, r.err
}

// dialIn runs on a locked thread: it enters the namespace, dials, and
// returns to the thread's original namespace, reporting whether it did.
func dialIn(ctx context.Context, target int, network, address string) (conn net.Conn, restored bool, err error) {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, true, fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("entering the network namespace: %w", err)
	}
	var d net.Dialer
	conn, err = d.DialContext(ctx, network, address)
	if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
		return conn, false, err
	}
	return conn, true, err
}
