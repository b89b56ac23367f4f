// Package archive writes and reads the checkpoint archives of
// CheckpointContainer, CheckpointPod and RestorePod, in the layout CRI-O
// writes and checkpointctl reads: config.dump, spec.dump, rootfs-diff.tar,
// deleted.files and the CRIU images under checkpoint/.
package archive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Members of a container archive, as CRI-O names them.
const (
	// ConfigDumpFile holds ContainerConfig.
	ConfigDumpFile = "config.dump"
	// SpecDumpFile holds the container's OCI runtime spec (Spec).
	SpecDumpFile = "spec.dump"
	// CheckpointDirectory holds CRIU's images of the processes, when the
	// archive has them.
	CheckpointDirectory = "checkpoint"
	// RootfsDiffTar is a tar of what the container added to or changed
	// in its image's filesystem.
	RootfsDiffTar = "rootfs-diff.tar"
	// DeletedFilesFile is a JSON list of the image's paths the container
	// deleted.
	DeletedFilesFile = "deleted.files"
)

// Members of a pod checkpoint directory (CheckpointPod's output_path).
const (
	// PodDumpFile holds the pod's sandbox configuration as Berth knew it.
	PodDumpFile = "pod.dump"
	// PodOptionsFile holds PodOptions.
	PodOptionsFile = "pod.options"
	// ContainersDirectory holds one container archive per container,
	// named <container name>.tar.
	ContainersDirectory = "containers"
)

// ContainerConfig is config.dump: the container's identity, as CRI-O and
// checkpointctl read it.
type ContainerConfig struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImage     string    `json:"rootfsImage,omitempty"`
	RootfsImageRef  string    `json:"rootfsImageRef,omitempty"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
	RestoredAt      time.Time `json:"restoredTime"`
	Restored        bool      `json:"restored"`
}

// Spec is spec.dump: the part of an OCI runtime spec that Docker's
// inspect output gives (Docker does not hand out the spec it made).
type Spec struct {
	OCIVersion  string            `json:"ociVersion"`
	Process     *Process          `json:"process,omitempty"`
	Root        *Root             `json:"root,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Process is the container's process in Spec.
type Process struct {
	Terminal bool     `json:"terminal,omitempty"`
	User     User     `json:"user"`
	Args     []string `json:"args,omitempty"`
	Env      []string `json:"env,omitempty"`
	Cwd      string   `json:"cwd"`
}

// User is the process's identity in Spec. Username keeps Docker's user
// spec as given ("name", "uid:gid"), which an OCI spec resolves to ids.
type User struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	Username       string   `json:"username,omitempty"`
}

// Root is the container's root filesystem in Spec.
type Root struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly,omitempty"`
}

// Mount is one mount in Spec.
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// PodOptions is pod.options.
type PodOptions struct {
	Version int `json:"version"`
	// Containers are the checkpointed containers' names.
	Containers []string `json:"containers"`
	// ProcessState is false when the checkpoint has only the containers'
	// filesystems (CheckpointPod option process-state=omit).
	ProcessState   bool      `json:"processState"`
	CheckpointedAt time.Time `json:"checkpointedTime"`
	// RuntimeHandler is the pod's.
	RuntimeHandler string `json:"runtimeHandler,omitempty"`
}

// Writer writes an archive: an uncompressed tar of regular files and
// directories.
type Writer struct {
	tw  *tar.Writer
	now time.Time
}

// NewWriter writes an archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{tw: tar.NewWriter(w), now: time.Now()}
}

// JSON adds a member holding v as indented JSON.
func (w *Writer) JSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return w.Bytes(name, data)
}

// Bytes adds a member holding data.
func (w *Writer) Bytes(name string, data []byte) error {
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: w.now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// File adds a member holding size bytes read from r.
func (w *Writer) File(name string, r io.Reader, size int64) error {
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: w.now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	n, err := io.Copy(w.tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d bytes of %d", name, n, size)
	}
	return err
}

// Tree adds the regular files and directories below dir on disk under
// name (CRIU's images).
func (w *Writer) Tree(name, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		member := path.Join(name, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return w.tw.WriteHeader(&tar.Header{Name: member + "/", Mode: 0o700, ModTime: info.ModTime(), Typeflag: tar.TypeDir})
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return w.File(member, f, info.Size())
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
	})
}

// Close finishes the archive.
func (w *Writer) Close() error { return w.tw.Close() }

// Extract unpacks an archive written by Writer into dir, which must exist.
// Only regular files and directories inside dir are accepted.
func Extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !filepath.IsLocal(name) {
			return fmt.Errorf("the archive has a member outside it: %q", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("the archive member %q is not a regular file or directory", hdr.Name)
		}
	}
}

// ReadJSON reads the member name, extracted into dir, into v.
func ReadJSON(dir, name string, v any) error {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
