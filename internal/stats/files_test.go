package stats

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenFilesRereadsFreshContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "memory.stat")
	if err := os.WriteFile(p, []byte("a 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := NewOpenFiles()
	defer o.Close()
	buf := make([]byte, 0, 16)
	got, err := o.read(p, &buf)
	if err != nil || string(got) != "a 1\n" {
		t.Fatalf("read = %q, %v", got, err)
	}
	// Rewritten in place, longer than the buffer: the same open file
	// gives the new content.
	big := bytes.Repeat([]byte("x"), 10000)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write(big)
	f.Close()
	if got, err := o.read(p, &buf); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read after rewrite: %d bytes, %v", len(got), err)
	}
	if len(o.files) != 1 {
		t.Errorf("%d files open, want 1", len(o.files))
	}

	missing := filepath.Join(dir, "memory.swap.current")
	for i := 0; i < 2; i++ {
		if _, err := o.read(missing, &buf); !os.IsNotExist(err) && !isGone(err) {
			t.Fatalf("reading a missing file: %v", err)
		}
	}
	// Remembered as missing even if it appears (a cgroup's set of files
	// does not change).
	_ = os.WriteFile(missing, []byte("1\n"), 0o644)
	if _, err := o.read(missing, &buf); !isGone(err) {
		t.Errorf("a file missing before was read: %v", err)
	}

	o.Close()
	if len(o.files) != 0 {
		t.Errorf("files left open after Close")
	}
	// Reading after Close still works (and keeps nothing open).
	if got, err := o.read(p, &buf); err != nil || len(got) != len(big) || len(o.files) != 0 {
		t.Errorf("read after Close: %d bytes, %v, %d open", len(got), err, len(o.files))
	}
}

func TestReadCgroupThroughOpenFiles(t *testing.T) {
	cg := v2Fixture()
	cg.Files = NewOpenFiles()
	defer cg.Files.Close()
	for i := 0; i < 2; i++ {
		st, err := ReadCgroup(cg, all)
		if err != nil || st.Memory.WorkingSet != 150<<20-30<<20 || st.CPU.UsageNs != 2_500_000_000 {
			t.Fatalf("ReadCgroup through open files: %+v, %v", st, err)
		}
	}
}
