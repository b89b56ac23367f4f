package sockets

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen("unix://"+path, -1)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l2.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, %v; want 0660", fi.Mode(), err)
	}
	// A live socket is refused.
	if _, err := Listen("unix://"+path, -1); !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen on a live socket = %v, want ErrInUse", err)
	}
	l2.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket not removed on close")
	}
}

func TestListenCreatesParentAndRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	l, err := Listen("unix://"+filepath.Join(dir, "x", "y", "s.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://"+file, -1); err == nil {
		t.Error("a regular file was replaced by a socket")
	}
}

func TestFdWithoutSystemd(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	if _, err := Listen("fd://", -1); err == nil {
		t.Error("fd:// without LISTEN_FDS succeeded")
	}
}
