package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// kubeletLockPath is the lock every run that starts a kubelet, or that
// judges the kubelets running on this machine, holds while it runs.
var kubeletLockPath = filepath.Join(os.TempDir(), "berth-kubelet-suite.lock")

// LockKubeletHost serialises the runs that involve kubelet on this machine
// — the kubelet suite, the node conformance suite, berth doctor's tests,
// which inspect the running kubelets — since kubelet's ports, its device
// plugin socket, /var/lib/kubelet and /var/log/pods are host-wide. who
// names the caller in the line printed while it waits. The lock is
// released when tb ends.
func LockKubeletHost(tb testing.TB, who string) {
	tb.Helper()
	unlock, err := lockKubeletHost(who)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(unlock)
}

// LockKubeletHostMain is LockKubeletHost for a TestMain: the caller runs
// unlock when its tests end.
func LockKubeletHostMain(who string) (unlock func(), err error) {
	return lockKubeletHost(who)
}

func lockKubeletHost(who string) (func(), error) {
	f, err := os.OpenFile(kubeletLockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Printf("%s: a run with a kubelet holds this host; waiting for %s\n", who, kubeletLockPath)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", kubeletLockPath, err)
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
