package logs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func fstat(f *os.File) (fileID, int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, 0, err
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, st.Size, nil
}

func stat(path string) (fileID, int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, 0, err
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, st.Size, nil
}

// openCRI opens the CRI log file at path for appending, creating it (mode
// 0640) and its directory (0755) if needed. It opens read-write because
// recovery reads back what an earlier Berth wrote.
//
// The last component of path is never followed if it is a symbolic link: a
// link there (cri-dockerd links the CRI path to Docker's json file) is
// replaced by a regular file, so Berth never writes outside the log
// directory, nor into Docker's file. replaced reports that a link was found.
func openCRI(path string) (f *os.File, replaced bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("creating log directory: %w", err)
	}
	for range 5 {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
		if err == nil {
			// The umask may have taken bits the mode needs.
			_ = unix.Fchmod(fd, 0o640)
			return os.NewFile(uintptr(fd), path), replaced, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, replaced, fmt.Errorf("creating log file %s: %w", path, err)
		}
		// O_NONBLOCK: opening a FIFO planted at path must fail, not hang.
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ELOOP):
			if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
				return nil, replaced, fmt.Errorf("replacing the symbolic link at %s: %w", path, err)
			}
			replaced = true
			continue
		case errors.Is(err, unix.ENOENT):
			continue // removed meanwhile
		case err != nil:
			return nil, replaced, fmt.Errorf("opening log file %s: %w", path, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, replaced, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return nil, replaced, fmt.Errorf("log file %s is not a regular file", path)
		}
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, replaced, err
		}
		return os.NewFile(uintptr(fd), path), replaced, nil
	}
	return nil, replaced, fmt.Errorf("opening log file %s: it keeps changing", path)
}

// openReadOnly opens a file for reading without following a link at its
// last component.
func openReadOnly(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// dockerFile is one of the files of a container's json log: the current one
// (index 0, the base name) or a rotated one (index i, base name + ".i"; the
// higher the older).
type dockerFile struct {
	path  string
	index int
	id    fileID
	size  int64
}

// dockerFiles lists the json log file at base and its uncompressed
// rotations, newest first. Compressed rotations (".gz", with Docker's
// compress=true) cannot be read and are left out.
func dockerFiles(base string) ([]dockerFile, error) {
	dir, name := filepath.Split(base)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []dockerFile
	for _, e := range ents {
		n := e.Name()
		idx := 0
		if n != name {
			suffix, ok := strings.CutPrefix(n, name+".")
			if !ok {
				continue
			}
			i, err := strconv.Atoi(suffix)
			if err != nil || i <= 0 || strconv.Itoa(i) != suffix {
				continue
			}
			idx = i
		}
		p := filepath.Join(dir, n)
		id, size, err := stat(p)
		if err != nil {
			continue // rotated away meanwhile
		}
		out = append(out, dockerFile{path: p, index: idx, id: id, size: size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out, nil
}

// headLen is how much of a Docker log file's beginning identifies it.
const headLen = 256

// headOf hashes the first n bytes of f.
func headOf(f *os.File, n int) (string, error) {
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return "", err
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16]), nil
}

func lstatID(path string) (fileID, int64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fileID{}, 0, err
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, st.Size, nil
}
