package stats

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirUsage is what a directory tree holds.
type DirUsage struct {
	// Bytes is the apparent size of everything but directories, each inode
	// counted once: the figure Docker reports as a container's SizeRw.
	Bytes uint64
	// Inodes counts the distinct inodes, directories included.
	Inodes uint64
}

// WalkUsage walks dir and adds up its usage. Entries that vanish during
// the walk are skipped (a running container changes its layer meanwhile).
// It stops early when ctx ends.
func WalkUsage(ctx context.Context, dir string) (DirUsage, error) {
	var u DirUsage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		u.Inodes++
		if !d.IsDir() {
			u.Bytes += uint64(max(fi.Size(), 0))
		}
		return nil
	})
	return u, err
}
