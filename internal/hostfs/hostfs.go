// Package hostfs answers whether a path exists on the host's file system,
// for the packages that look for Docker's, CNI's and the checkpoints'
// directories before they use them.
package hostfs

import "os"

// Exists reports whether path names something that can be stat'ed (a
// symbolic link is followed).
func Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// IsDir reports whether path is a directory (a symbolic link is followed).
func IsDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
