package safefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPrivateDirRefusesASymlink(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("PrivateDir made %v (%v), want a 0700 directory", fi.Mode(), err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(link); err == nil || !strings.Contains(err.Error(), "symlinks are refused") {
		t.Fatalf("PrivateDir of a symlink: %v", err)
	}
}

func TestWriteReplacesAtomicallyAndNeverFollowsALink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rec.json")
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A link planted where the temporary file goes is removed, not written
	// through.
	if err := os.Symlink(outside, tmpPath(p)); err != nil {
		t.Fatal(err)
	}
	for _, durable := range []bool{false, true} {
		if err := Write(p, []byte("new"), durable); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "untouched" {
		t.Fatalf("file behind the planted link: %q", b)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "new" {
		t.Fatalf("read back %q", b)
	}
	if _, err := os.Lstat(tmpPath(p)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
}

func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/etc/hostname", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, fifo, dir} {
		if f, err := Open(p); !errors.Is(err, ErrNotRegular) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%s): %v, want ErrNotRegular", p, err)
		}
	}
}

func TestRemoveTakesTheTemporaryFileToo(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rec.json")
	for _, f := range []string{p, tmpPath(p)} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left: %v", entries)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("removing a missing record: %v", err)
	}
}
