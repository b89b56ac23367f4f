// Package safefile keeps Berth's small records (sandbox checkpoints, log
// positions) in private directories under --root-dir: written atomically,
// never through a symbolic link or into a FIFO planted there, and removed
// together with what a crash in the middle of a write leaves behind.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is wrapped by Open's error when the path holds something
// other than a regular file: a symbolic link, a FIFO, a device, a directory.
var ErrNotRegular = errors.New("not a regular file")

// PrivateDir creates dir (mode 0700) if it is missing, and refuses a dir
// that is a symbolic link or not a directory.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (symlinks are refused)", dir)
	}
	return nil
}

// tmpPath is where Write puts data before renaming it over path.
func tmpPath(path string) string { return path + ".tmp" }

// Write replaces path's content with data atomically: a temporary file
// beside it is written, then renamed over it. With durable, the file and
// then the directory are synced, so the new content survives a power
// failure once Write returns.
func Write(path string, data []byte, durable bool) error {
	tmp := tmpPath(path)
	// O_EXCL|O_NOFOLLOW: never write through a link planted in the
	// directory; a temporary file left by a crash is removed first.
	_ = unix.Unlink(tmp)
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if durable {
		return SyncDir(filepath.Dir(path))
	}
	return nil
}

// Open opens path for reading. A missing path is an error wrapping
// os.ErrNotExist; a symbolic link is not followed and, like a FIFO (which
// would block a plain open) or any other non-regular file, is an error
// wrapping ErrNotRegular.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s: a symbolic link: %w", path, ErrNotRegular)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: a %v: %w", path, fi.Mode().Type(), ErrNotRegular)
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Remove deletes path and the temporary file a crash during Write may have
// left beside it; either being missing is not an error.
func Remove(path string) error {
	for _, p := range []string{path, tmpPath(path)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// SyncDir syncs a directory, making the renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
