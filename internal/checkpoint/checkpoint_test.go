package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/network"
)

func TestSaveLoadDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Sandbox{ID: "abc123", Name: "k8s_POD_p_ns_uid_0", PodName: "p", PodNamespace: "ns", PodUID: "uid",
		PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}},
		Network: &Network{State: StateUp, Attachment: network.Attachment{
			ConfList: []byte(`{"name":"n"}`), NetNS: "/proc/1/ns/net", IfName: "eth0", IPs: []string{"10.0.0.2"}}}}
	if err := s.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("abc123")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("Load = %+v, want %+v", got, rec)
	}
	ids, _ := s.IDs()
	if len(ids) != 1 || ids[0] != "abc123" {
		t.Errorf("IDs = %v", ids)
	}
	if err := s.Delete("abc123"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("abc123"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Load("abc123"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load after Delete = %v", err)
	}
	// A temporary file left by a crash during Save goes with the record.
	if err := s.Save(&Sandbox{ID: "left"}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "left.json.tmp")
	if err := os.WriteFile(tmp, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("left"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left after Delete: %v", entries)
	}
}

func TestCorruptRecordIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	if err := s.Save(&Sandbox{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "x.json")
	data, _ := os.ReadFile(p)
	// Flip a byte of the data: the checksum no longer matches.
	data = []byte(strings.Replace(string(data), `\"id\":\"x\"`, `\"id\":\"y\"`, 1))
	data = []byte(strings.Replace(string(data), `"id":"x"`, `"id":"y"`, 1))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("x"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("corrupt record left in place")
	}
	matches, _ := filepath.Glob(p + ".corrupt-*")
	if len(matches) != 1 {
		t.Errorf("quarantined copies = %v", matches)
	}
	// Garbage is corrupt too.
	if err := os.WriteFile(filepath.Join(dir, "g.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("g"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage Load = %v", err)
	}
}

func TestSymlinksAreNotFollowed(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := Open(filepath.Join(dir, "cp"))
	// A symlink planted where the temp file goes must not be written through.
	if err := os.Symlink(outside, filepath.Join(dir, "cp", "s1.json.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&Sandbox{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(outside); string(data) != "keep" {
		t.Errorf("wrote through a symlink: %q", data)
	}
	// A record that is a symlink is not followed: it is corrupt, and moved
	// aside (the link, not what it points to) so Stop and Remove go on.
	if err := os.Symlink(outside, filepath.Join(dir, "cp", "s2.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("s2"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a symlink = %v, want ErrCorrupt", err)
	}
	if q, _ := filepath.Glob(filepath.Join(dir, "cp", "s2.json.corrupt-*")); len(q) != 1 {
		t.Errorf("symlink not quarantined: %v", q)
	} else if fi, err := os.Lstat(q[0]); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("quarantined %s is not the link itself: %v %v", q[0], fi, err)
	}
	if data, _ := os.ReadFile(outside); string(data) != "keep" {
		t.Errorf("the link's target changed: %q", data)
	}
	// So is a FIFO, which must not block the reader.
	if err := unix.Mkfifo(filepath.Join(dir, "cp", "s3.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("s3"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a FIFO = %v, want ErrCorrupt", err)
	}
	// A symlinked checkpoint directory is refused.
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "link")); err == nil {
		t.Errorf("Open accepted a symlinked directory")
	}
	if err := s.Save(&Sandbox{ID: "../escape"}); err == nil {
		t.Errorf("Save accepted a path in the id")
	}
}
