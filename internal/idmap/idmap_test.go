package idmap

import (
	"strings"
	"testing"
)

func TestParseAndFormat(t *testing.T) {
	ms := []Mapping{{0, 100000, 65536}, {65536, 300000, 10}}
	s := Format(ms)
	if s != "0:100000:65536,65536:300000:10" {
		t.Fatalf("Format = %q", s)
	}
	got, err := Parse(s)
	if err != nil || !Equal(got, ms) {
		t.Fatalf("Parse(%q) = %v, %v", s, got, err)
	}
	for _, tc := range []struct{ in, err string }{
		{"", "no ID mappings"},
		{"0:1", "want container:host:length"},
		{"0:1:0", "length 0"},
		{"0:x:1", "invalid syntax"},
		{"0:4294967295:2", "overflows"},
		{"0:1:4294967296", "out of range"},
	} {
		if _, err := Parse(tc.in); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q) error = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestHostRoot(t *testing.T) {
	if id, ok := HostRoot([]Mapping{{1, 5, 10}, {0, 100000, 1}}); !ok || id != 100000 {
		t.Errorf("HostRoot = %d, %v", id, ok)
	}
	if _, ok := HostRoot([]Mapping{{1, 5, 10}}); ok {
		t.Error("HostRoot found an unmapped 0")
	}
}

func TestParseProcMap(t *testing.T) {
	got, err := ParseProcMap([]byte("         0     100000      65536\n"))
	if err != nil || !Equal(got, []Mapping{{0, 100000, 65536}}) {
		t.Fatalf("ParseProcMap = %v, %v", got, err)
	}
	if _, err := ParseProcMap([]byte("0 1\n")); err == nil {
		t.Error("a short line parsed")
	}
}

func TestMounts(t *testing.T) {
	got, err := ParseMounts(FormatMounts([]string{"/a", "/b c"}))
	if err != nil || len(got) != 2 || got[1] != "/b c" {
		t.Fatalf("round trip = %v, %v", got, err)
	}
	if got, err := ParseMounts(""); err != nil || got != nil {
		t.Errorf("empty = %v, %v", got, err)
	}
	if _, err := ParseMounts("[1]"); err == nil {
		t.Error("bad JSON parsed")
	}
}
