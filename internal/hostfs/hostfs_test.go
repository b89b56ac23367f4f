package hostfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestExistsAndIsDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		path          string
		exists, isDir bool
	}{
		{"directory", dir, true, true},
		{"file", file, true, false},
		{"link to a directory", link, true, true},
		{"missing", filepath.Join(dir, "missing"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Exists(tc.path); got != tc.exists {
				t.Errorf("Exists(%q) = %v, want %v", tc.path, got, tc.exists)
			}
			if got := IsDir(tc.path); got != tc.isDir {
				t.Errorf("IsDir(%q) = %v, want %v", tc.path, got, tc.isDir)
			}
		})
	}
}
