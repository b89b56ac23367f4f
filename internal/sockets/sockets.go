// Package sockets opens the CRI server's listener: a unix socket Berth
// creates (replacing a stale one, refusing a live one) or a socket systemd
// passes in (fd://).
package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/berth-cri/berth/internal/config"
)

// ErrInUse means another live process serves the socket path.
var ErrInUse = errors.New("socket is in use by another process")

// Listen opens the listener for a CRI endpoint (unix:///path or fd://[name]).
// A unix socket gets mode 0660 and, if gid >= 0, that group.
func Listen(endpoint string, gid int) (net.Listener, error) {
	scheme, addr, err := config.ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if scheme == "fd" {
		return systemdListener(addr)
	}
	return listenUnix(addr, gid)
}

func listenUnix(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the socket's directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The socket is created with umask 0117 so it is never, even briefly,
	// reachable by others before the chmod below.
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	// Closing the listener removes the socket file, so a clean stop leaves
	// nothing behind.
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("chown %s to group %d: %w", path, gid, err)
		}
	}
	return l, nil
}

// removeStale removes a socket file left by a crashed run. A socket some
// process still accepts on is an error; so is a path that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another --container-runtime-endpoint", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s: %w (is another berth or CRI runtime running?)", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("checking whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

// systemdListener returns the socket systemd passed (LISTEN_FDS), the one
// named name if a name is given (FileDescriptorName=), else the first.
func systemdListener(name string) (net.Listener, error) {
	if name != "" {
		named, err := activation.ListenersWithNames()
		if err != nil {
			return nil, fmt.Errorf("fd://%s: %w", name, err)
		}
		if ls := named[name]; len(ls) > 0 {
			return ls[0], nil
		}
		return nil, fmt.Errorf("fd://%s: systemd passed no socket named %q", name, name)
	}
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("fd://: %w", err)
	}
	for _, l := range ls {
		if l != nil {
			return l, nil
		}
	}
	return nil, errors.New("fd://: systemd passed no listening socket (LISTEN_FDS unset); is berth.socket enabled?")
}
