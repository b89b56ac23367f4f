package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDocker writes a container's log the way Docker's json-file driver
// does: one JSON line per chunk, each in a single write, and rotation by
// closing the file, renaming it to .1 (older ones shifted, the oldest
// dropped past maxFiles) and creating a new one.
type fakeDocker struct {
	t        testing.TB
	id       string
	dir      string
	path     string
	maxFiles int // 0: never drop rotated files

	mu    sync.Mutex // guards f, clock, lines
	f     *os.File
	clock time.Time
	lines int
}

func newFakeDocker(t testing.TB, root, id string) *fakeDocker {
	t.Helper()
	dir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &fakeDocker{t: t, id: id, dir: dir, path: filepath.Join(dir, id+"-json.log"),
		clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d.open()
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.f != nil {
			d.f.Close()
		}
	})
	return d
}

func (d *fakeDocker) open() {
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		d.t.Fatal(err)
	}
	d.f = f
}

// write appends one entry and returns its timestamp.
func (d *fakeDocker) write(stream, log string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock = d.clock.Add(1500 * time.Nanosecond)
	ts := d.clock.Format(time.RFC3339Nano)
	b, err := json.Marshal(map[string]any{"log": log, "stream": stream, "time": ts})
	if err != nil {
		d.t.Fatal(err)
	}
	if d.lines%7 == 3 { // Docker adds attrs when log-opt labels/env/tag are set
		b, _ = json.Marshal(map[string]any{"log": log, "stream": stream, "attrs": map[string]string{"tag": "t"}, "time": ts})
	}
	d.lines++
	if _, err := d.f.Write(append(b, '\n')); err != nil {
		d.t.Error(err)
	}
	return ts
}

// writeRaw appends bytes as they are.
func (d *fakeDocker) writeRaw(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.WriteString(s); err != nil {
		d.t.Error(err)
	}
}

func (d *fakeDocker) rotate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.f.Close()
	last := 0
	for i := 1; ; i++ {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", d.path, i)); err != nil {
			break
		}
		last = i
	}
	for i := last; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", d.path, i)
		if d.maxFiles > 0 && i+1 >= d.maxFiles {
			os.Remove(from)
			continue
		}
		if err := os.Rename(from, fmt.Sprintf("%s.%d", d.path, i+1)); err != nil {
			d.t.Fatal(err)
		}
	}
	if d.maxFiles == 1 {
		os.Remove(d.path)
	} else if err := os.Rename(d.path, d.path+".1"); err != nil {
		d.t.Fatal(err)
	}
	d.open()
}

// criLine is one parsed line of a CRI log file.
type criLine struct {
	ts, stream string
	tag        byte
	content    string
}

var criRE = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

// readCRI parses a CRI log file strictly.
func readCRI(t testing.TB, path string) []criLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end in a newline: %q", path, tail(data))
	}
	var out []criLine
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l == "" {
			continue
		}
		l = strings.TrimSuffix(l, "\n")
		m := criRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s: not a CRI log line: %q", path, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("%s: bad timestamp in %q", path, l)
		}
		out = append(out, criLine{ts: m[1], stream: m[2], tag: m[3][0], content: m[4]})
	}
	return out
}

func tail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

// criFiles returns the CRI files of criPath: the ones kubelet rotated
// (<path>.<n>, in order of n), then the current one.
func criFiles(t testing.TB, criPath string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(criPath))
	if err != nil {
		t.Fatal(err)
	}
	type rf struct {
		n    int
		path string
	}
	var rot []rf
	base := filepath.Base(criPath)
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), base+"."); ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("unexpected file %s", e.Name())
			}
			rot = append(rot, rf{n, filepath.Join(filepath.Dir(criPath), e.Name())})
		}
	}
	sort.Slice(rot, func(i, j int) bool { return rot[i].n < rot[j].n })
	var out []string
	for _, r := range rot {
		out = append(out, r.path)
	}
	if _, err := os.Lstat(criPath); err == nil {
		out = append(out, criPath)
	}
	return out
}

// allLines returns the lines of all CRI files of criPath in order.
func allLines(t testing.TB, criPath string) []criLine {
	var out []criLine
	for _, p := range criFiles(t, criPath) {
		out = append(out, readCRI(t, p)...)
	}
	return out
}

// kubeletRotate renames criPath the way kubelet does before it calls
// ReopenContainerLog (kubelet appends a timestamp; a counter keeps order).
func kubeletRotate(t testing.TB, criPath string, n int) string {
	t.Helper()
	to := fmt.Sprintf("%s.%06d", criPath, n)
	if err := os.Rename(criPath, to); err != nil {
		t.Fatal(err)
	}
	return to
}

// seqLines writes lines "line <n>" n = from..to-1 to d.
func seqLines(d *fakeDocker, from, to int) {
	for i := from; i < to; i++ {
		stream := "stdout"
		if i%5 == 0 {
			stream = "stderr"
		}
		d.write(stream, fmt.Sprintf("line %06d\n", i))
	}
}

// checkSeq checks that lines hold "line <n>" for n = 0..want-1, each exactly
// once and in order, with the right stream and tag.
func checkSeq(t testing.TB, lines []criLine, want int) {
	t.Helper()
	next := 0
	for i, l := range lines {
		var n int
		if _, err := fmt.Sscanf(l.content, "line %06d", &n); err != nil {
			t.Fatalf("line %d: unexpected content %q", i, l.content)
		}
		if n != next {
			t.Fatalf("line %d: got line %d, want line %d (lost or repeated lines)", i, n, next)
		}
		wantStream := "stdout"
		if n%5 == 0 {
			wantStream = "stderr"
		}
		if l.stream != wantStream || l.tag != 'F' {
			t.Fatalf("line %d: stream %s tag %c", i, l.stream, l.tag)
		}
		next++
	}
	if next != want {
		t.Fatalf("got %d lines, want %d", next, want)
	}
}

// eventually polls cond until it holds; the limit only bounds a failing
// test, nothing is asserted about time.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countLines counts the lines of all CRI files of criPath without parsing.
func countLines(t testing.TB, criPath string) int {
	n := 0
	for _, p := range criFiles(t, criPath) {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		buf := make([]byte, 64<<10)
		for {
			k, err := f.Read(buf)
			n += bytes.Count(buf[:k], []byte{'\n'})
			if err == io.EOF || err != nil {
				break
			}
		}
		f.Close()
	}
	return n
}

// testLogger collects log records, so tests can check what was reported,
// and prints them when the test fails.
type testLogger struct {
	mu   sync.Mutex
	recs []string
}

type recordHandler struct {
	tl    *testLogger
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{tl: h.tl, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *recordHandler) WithGroup(string) slog.Handler { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s", a); return true })
	h.tl.mu.Lock()
	h.tl.recs = append(h.tl.recs, b.String())
	h.tl.mu.Unlock()
	return nil
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLogger) {
	tl := &testLogger{}
	t.Cleanup(func() {
		if t.Failed() {
			tl.mu.Lock()
			defer tl.mu.Unlock()
			for _, r := range tl.recs {
				t.Log(r)
			}
		}
	})
	return slog.New(&recordHandler{tl: tl}), tl
}

func (l *testLogger) has(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			return true
		}
	}
	return false
}

// testManager starts a Manager with short periods for tests.
func testManager(t testing.TB, stateDir string, log *slog.Logger) *Manager {
	t.Helper()
	if log == nil {
		log, _ = newTestLogger(t)
	}
	m, err := newManager(stateDir, log, options{tick: 50 * time.Millisecond, exitGrace: 100 * time.Millisecond, workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func running() bool    { return true }
func notRunning() bool { return false }
