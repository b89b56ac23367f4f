package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

// fakeFS is a container filesystem that answers like Docker's archive API.
type fakeFS map[string]string // path → contents; "dir/" suffix-less dirs have value "<dir>"

func (f fakeFS) copy(_ context.Context, p string) (io.ReadCloser, error) {
	if _, ok := f[p]; !ok {
		return nil, errors.New("no such path " + p)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var paths []string
	for q := range f {
		if q == p || strings.HasPrefix(q, p+"/") {
			paths = append(paths, q)
		}
	}
	slices.Sort(paths)
	base := path.Dir(p)
	for _, q := range paths {
		name := strings.TrimPrefix(strings.TrimPrefix(q, base), "/")
		if f[q] == "<dir>" {
			_ = tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f[q]))})
		_, _ = tw.Write([]byte(f[q]))
	}
	_ = tw.Close()
	return io.NopCloser(&buf), nil
}

func members(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if hdr.Typeflag == tar.TypeDir {
			out[hdr.Name] = "<dir>"
		} else {
			out[hdr.Name] = string(data)
		}
	}
}

func TestWriteRootfsDiff(t *testing.T) {
	fs := fakeFS{
		"/data": "<dir>", "/data/sub": "<dir>", "/data/sub/f": "hi", "/data/mnt": "<dir>", "/data/mnt/secret": "host file",
		"/etc": "<dir>", "/etc/passwd": "root", "/etc/group": "unchanged",
		"/tmp": "<dir>", "/tmp/new": "n",
	}
	changes := []container.FilesystemChange{
		{Kind: container.ChangeModify, Path: "/tmp"},
		{Kind: container.ChangeAdd, Path: "/tmp/new"},
		{Kind: container.ChangeAdd, Path: "/data"},
		{Kind: container.ChangeAdd, Path: "/data/sub"},
		{Kind: container.ChangeAdd, Path: "/data/sub/f"},
		{Kind: container.ChangeModify, Path: "/etc"},
		{Kind: container.ChangeModify, Path: "/etc/passwd"},
		{Kind: container.ChangeDelete, Path: "/etc/nsswitch.conf"},
		{Kind: container.ChangeAdd, Path: "/etc/hosts"}, // a mount
		{Kind: container.ChangeDelete, Path: "/vol/x"},  // below a mount
		{Kind: container.ChangeModify, Path: "/"},       // never copied
	}
	var buf bytes.Buffer
	deleted, err := WriteRootfsDiff(context.Background(), &buf, changes, fs.copy, []string{"/etc/hosts", "/data/mnt", "/vol"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, []string{"/etc/nsswitch.conf"}) {
		t.Errorf("deleted = %v", deleted)
	}
	want := map[string]string{
		"data/": "<dir>", "data/sub/": "<dir>", "data/sub/f": "hi", // an added directory, whole, without the mount in it
		"etc/": "<dir>", "etc/passwd": "root", // a modified directory, only itself
		"tmp/": "<dir>", "tmp/new": "n",
	}
	if got := members(t, &buf); len(got) != len(want) || !mapsEqual(got, want) {
		t.Errorf("rootfs-diff.tar = %v\nwant %v", got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func TestFilterTarAndCleanDeleted(t *testing.T) {
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, n := range []string{"etc/", "etc/passwd", "data/", "data/f"} {
		typ := byte(tar.TypeReg)
		if strings.HasSuffix(n, "/") {
			typ = tar.TypeDir
		}
		_ = tw.WriteHeader(&tar.Header{Name: n, Typeflag: typ, Mode: 0o644})
	}
	_ = tw.Close()
	var out bytes.Buffer
	if err := FilterTar(&out, bytes.NewReader(in.Bytes()), []string{"/data"}); err != nil {
		t.Fatal(err)
	}
	if got := members(t, &out); len(got) != 2 || got["etc/passwd"] != "" || got["etc/"] != "<dir>" {
		t.Errorf("filtered = %v", got)
	}

	var evil bytes.Buffer
	tw = tar.NewWriter(&evil)
	_ = tw.WriteHeader(&tar.Header{Name: "../../etc/shadow", Typeflag: tar.TypeReg})
	_ = tw.Close()
	if err := FilterTar(io.Discard, &evil, nil); err == nil {
		t.Error("a member outside the root was accepted")
	}
	if _, err := CleanDeleted([]string{"/etc/x", "/../../etc/shadow"}); err == nil {
		t.Error("a deleted path outside the root was accepted")
	}
	if got, err := CleanDeleted([]string{"/etc//x"}); err != nil || !slices.Equal(got, []string{"/etc/x"}) {
		t.Errorf("CleanDeleted = %v %v", got, err)
	}
}

func TestWriterAndExtract(t *testing.T) {
	images := t.TempDir()
	if err := os.MkdirAll(filepath.Join(images, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(images, "pages-1.img"), []byte("memory"), 0o600)
	_ = os.WriteFile(filepath.Join(images, "sub", "x"), []byte("x"), 0o600)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.JSON(ConfigDumpFile, ContainerConfig{ID: "c1", Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Tree(CheckpointDirectory, images); err != nil {
		t.Fatal(err)
	}
	if err := w.File(RootfsDiffTar, strings.NewReader("tar"), 3); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Extract(bytes.NewReader(buf.Bytes()), dir); err != nil {
		t.Fatal(err)
	}
	var cfg ContainerConfig
	if err := ReadJSON(dir, ConfigDumpFile, &cfg); err != nil || cfg.ID != "c1" {
		t.Errorf("config.dump = %+v %v", cfg, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "checkpoint", "sub", "x")); string(data) != "x" {
		t.Errorf("checkpoint/sub/x = %q", data)
	}

	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg})
	_ = tw.Close()
	if err := Extract(&evil, t.TempDir()); err == nil {
		t.Error("Extract accepted a member outside the directory")
	}
	evil.Reset()
	tw = tar.NewWriter(&evil)
	_ = tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
	_ = tw.Close()
	if err := Extract(&evil, t.TempDir()); err == nil {
		t.Error("Extract accepted a symlink")
	}
}
