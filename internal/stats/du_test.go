package stats

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestWalkUsage(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a", "f1"), make([]byte, 1000), 0o644))
	must(os.WriteFile(filepath.Join(dir, "a", "b", "f2"), make([]byte, 24), 0o644))
	must(os.Link(filepath.Join(dir, "a", "f1"), filepath.Join(dir, "hard"))) // counted once
	must(os.Symlink("a/b/f2", filepath.Join(dir, "sym")))                    // its own inode, len("a/b/f2") bytes
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))

	u, err := WalkUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// Inodes: dir, a, a/b, f1 (= hard), f2, sym, empty.
	want := DirUsage{Bytes: 1000 + 24 + uint64(len("a/b/f2")), Inodes: 7}
	if u != want {
		t.Errorf("WalkUsage = %+v, want %+v", u, want)
	}

	if _, err := WalkUsage(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Errorf("walking a missing directory succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WalkUsage(ctx, dir); err == nil {
		t.Errorf("walk with a cancelled context succeeded")
	}
}
