package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// CopyFunc returns a tar stream of one path of a container's filesystem, a
// directory with everything below it, its members named from the path's
// last element (Docker's archive API).
type CopyFunc func(ctx context.Context, path string) (io.ReadCloser, error)

// WriteRootfsDiff writes to w a tar of what changes (a container's
// writable layer, as Docker lists it) adds and modifies, named relative to
// the root, and returns the paths the changes delete. What is at or below
// a path in skip (the container's mounts) is left out: it is not the
// container's filesystem.
//
// An added directory is copied whole; a modified one only as itself (its
// owner, mode and times), since its changed entries are listed on their
// own.
func WriteRootfsDiff(ctx context.Context, w io.Writer, changes []container.FilesystemChange, copyFrom CopyFunc, skip []string) (deleted []string, err error) {
	changes = slices.Clone(changes)
	slices.SortFunc(changes, func(a, b container.FilesystemChange) int { return strings.Compare(a.Path, b.Path) })
	tw := tar.NewWriter(w)
	var copied []string // added directories copied whole
	for _, ch := range changes {
		p := path.Clean("/" + ch.Path)
		if p == "/" || under(p, skip) || under(p, copied) {
			continue
		}
		switch ch.Kind {
		case container.ChangeDelete:
			deleted = append(deleted, p)
		case container.ChangeAdd, container.ChangeModify:
			whole := ch.Kind == container.ChangeAdd
			isDir, err := copyPath(ctx, tw, copyFrom, p, whole, skip)
			if err != nil {
				return nil, err
			}
			if isDir && whole {
				copied = append(copied, p)
			}
		default:
			return nil, fmt.Errorf("%s: unknown kind of change %d", p, ch.Kind)
		}
	}
	return deleted, tw.Close()
}

// copyPath copies p from the container into tw: everything below it when
// whole, else only p itself. It reports whether p is a directory.
func copyPath(ctx context.Context, tw *tar.Writer, copyFrom CopyFunc, p string, whole bool, skip []string) (bool, error) {
	rc, err := copyFrom(ctx, p)
	if err != nil {
		return false, fmt.Errorf("copying %s from the container: %w", p, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	parent := strings.TrimPrefix(path.Dir(p), "/")
	isDir := false
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if first {
				return false, fmt.Errorf("copying %s from the container: an empty archive", p)
			}
			return isDir, nil
		}
		if err != nil {
			return false, fmt.Errorf("copying %s from the container: %w", p, err)
		}
		name := path.Join(parent, strings.TrimSuffix(hdr.Name, "/"))
		if !strings.HasPrefix("/"+name+"/", p+"/") {
			return false, fmt.Errorf("copying %s from the container: a member %q outside it", p, hdr.Name)
		}
		if first {
			isDir = hdr.Typeflag == tar.TypeDir
		}
		if !first && under("/"+name, skip) {
			continue
		}
		hdr.Name = name
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(parent, hdr.Linkname)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return false, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return false, fmt.Errorf("copying %s from the container: %w", p, err)
		}
		if first && (!whole || !isDir) {
			return isDir, nil
		}
	}
}

// FilterTar copies the members of the tar r to w, leaving out those at or
// below a path in skip and any that would land outside the root.
func FilterTar(w io.Writer, r io.Reader, skip []string) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !isLocal(name) || (hdr.Typeflag == tar.TypeLink && !isLocal(hdr.Linkname)) {
			return fmt.Errorf("%s has a member outside the root: %q", RootfsDiffTar, hdr.Name)
		}
		if under("/"+name, skip) {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// CleanDeleted checks deleted.files: absolute paths below the root.
func CleanDeleted(deleted []string) ([]string, error) {
	out := make([]string, 0, len(deleted))
	for _, p := range deleted {
		rel := strings.TrimPrefix(p, "/")
		if !strings.HasPrefix(p, "/") || !isLocal(rel) {
			return nil, fmt.Errorf("%s: %q is not a path below the root", DeletedFilesFile, p)
		}
		out = append(out, path.Clean("/"+rel))
	}
	return out, nil
}

// isLocal is filepath.IsLocal for slash-separated names.
func isLocal(name string) bool {
	if name == "" || path.IsAbs(name) {
		return false
	}
	c := path.Clean(name)
	return c != ".." && !strings.HasPrefix(c, "../")
}

// under reports whether p (absolute) is one of dirs or below one.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		d = path.Clean(d)
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
